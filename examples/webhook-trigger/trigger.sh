#!/usr/bin/env bash
# Ask for an immediate scan of an ImageRepository and, optionally, an immediate run of an
# ImageUpdateAutomation, as a webhook Receiver does: by setting reconcile.fluxcd.io/requestedAt.
# Usage: trigger.sh NAMESPACE IMAGEREPOSITORY [IMAGEUPDATEAUTOMATION]   (kubectl's usual KUBECONFIG applies)
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 NAMESPACE IMAGEREPOSITORY [IMAGEUPDATEAUTOMATION]" >&2
  exit 2
fi
ns=$1
# Any new value triggers; a timestamp with nanoseconds keeps two quick triggers distinct.
now=$(date +%s.%N)
kubectl -n "$ns" annotate --overwrite "imagerepository/$2" "reconcile.fluxcd.io/requestedAt=$now"
if [ $# -eq 3 ]; then
  kubectl -n "$ns" annotate --overwrite "imageupdateautomation/$3" "reconcile.fluxcd.io/requestedAt=$now"
fi
