//! config/ installed on the real API server (`kubectl apply -k config/default`), and the controllers'
//! identities (tokens carrying their ServiceAccount user names) allowed exactly what each controller needs
//! by config/rbac's ClusterRoles and leader-election Roles, and denied the rest.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use e2e::{
    KUBE_NAMESPACE, KUBECONFIG_ADMIN, KUBECONFIG_AUTOMATION, KUBECONFIG_REFLECTOR, client_from,
    eventually, kubectl, testenv_var, unique_name,
};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, PostParams,
};
use kube::{Api, Client};

/// `(verb, group, resource[/subresource], namespace or "" for all, allowed)`; `@home` is the controllers'
/// namespace, `@other` any other namespace.
type Check = (&'static str, &'static str, &'static str, &'static str, bool);

const IMG: &str = "image.toolkit.fluxcd.io";
const COORD: &str = "coordination.k8s.io";

const REFLECTOR: &[Check] = &[
    ("watch", IMG, "imagerepositories", "", true),
    ("patch", IMG, "imagerepositories", "@other", true),
    ("patch", IMG, "imagerepositories/status", "@other", true),
    ("watch", IMG, "imagepolicies", "", true),
    ("patch", IMG, "imagepolicies/status", "@other", true),
    ("watch", "", "secrets", "", true),
    ("create", "", "serviceaccounts/token", "@other", true),
    ("create", "", "events", "@other", true),
    ("create", COORD, "leases", "@home", true),
    ("update", COORD, "leases", "@home", true),
    // Not its business.
    ("create", COORD, "leases", "@other", false),
    ("list", IMG, "imageupdateautomations", "", false),
    (
        "patch",
        IMG,
        "imageupdateautomations/status",
        "@other",
        false,
    ),
    ("delete", "", "secrets", "@other", false),
    ("create", "", "secrets", "@other", false),
    (
        "list",
        "source.toolkit.fluxcd.io",
        "gitrepositories",
        "",
        false,
    ),
];

const AUTOMATION: &[Check] = &[
    ("watch", IMG, "imageupdateautomations", "", true),
    ("patch", IMG, "imageupdateautomations", "@other", true),
    (
        "patch",
        IMG,
        "imageupdateautomations/status",
        "@other",
        true,
    ),
    ("watch", IMG, "imagepolicies", "", true),
    (
        "watch",
        "source.toolkit.fluxcd.io",
        "gitrepositories",
        "",
        true,
    ),
    ("get", "", "secrets", "@other", true),
    // Object-level workload identity for Git provider azure.
    ("get", "", "serviceaccounts", "@other", true),
    ("create", "", "serviceaccounts/token", "@other", true),
    ("create", "", "events", "@other", true),
    ("create", COORD, "leases", "@home", true),
    ("update", COORD, "leases", "@home", true),
    // Not its business: policies and repositories belong to the reflector.
    ("create", COORD, "leases", "@other", false),
    ("patch", IMG, "imagepolicies/status", "@other", false),
    ("patch", IMG, "imagepolicies", "@other", false),
    ("list", IMG, "imagerepositories", "", false),
    (
        "patch",
        "source.toolkit.fluxcd.io",
        "gitrepositories",
        "@other",
        false,
    ),
    ("delete", "", "secrets", "@other", false),
];

fn install_config_default() -> Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/default");
    let dir = dir.to_str().context("non-UTF-8 repository path")?;
    // See guide.rs: 1.20 needs a client-side apply without client validation for the CRDs.
    kubectl(KUBECONFIG_ADMIN, &["apply", "--validate=false", "-k", dir])?;
    Ok(())
}

async fn allowed(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: &str,
) -> Result<bool> {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource,
                namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .context("SelfSubjectAccessReview")?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

async fn check_identity(kubeconfig_var: &str, checks: &[Check]) -> Result<()> {
    let client = client_from(kubeconfig_var).await?;
    let home = testenv_var(KUBE_NAMESPACE)?;
    let resolve = |ns: &'static str| match ns {
        "@home" => home.clone(),
        "@other" => "some-tenant".to_string(),
        other => other.to_string(),
    };
    // The bindings were just applied; the authorizer's cache picks them up shortly.
    let (verb, group, resource, ns, _) = checks[0];
    eventually(
        &format!("{kubeconfig_var}: first permission granted"),
        || async {
            ensure!(
                allowed(&client, verb, group, resource, &resolve(ns)).await?,
                "not yet allowed"
            );
            Ok(())
        },
    )
    .await?;
    let mut wrong = Vec::new();
    for &(verb, group, resource, ns, expected) in checks {
        let got = allowed(&client, verb, group, resource, &resolve(ns)).await?;
        if got != expected {
            wrong.push(format!(
                "{verb} {group}/{resource} in {ns:?}: allowed={got}, expected {expected}"
            ));
        }
    }
    ensure!(wrong.is_empty(), "{kubeconfig_var}:\n{}", wrong.join("\n"));
    Ok(())
}

#[tokio::test]
async fn config_rbac_grants_each_controller_what_it_needs_and_no_more() -> Result<()> {
    install_config_default()?;
    check_identity(KUBECONFIG_REFLECTOR, REFLECTOR).await?;
    check_identity(KUBECONFIG_AUTOMATION, AUTOMATION).await?;

    // And for real: a leader-election Lease in the home namespace, a cluster-wide list of the own kind,
    // a 403 for the other controller's kind.
    let reflector = client_from(KUBECONFIG_REFLECTOR).await?;
    let home = testenv_var(KUBE_NAMESPACE)?;
    let leases = Api::<Lease>::namespaced(reflector.clone(), &home);
    let name = unique_name("lease")?;
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("e2e".into()),
            ..LeaseSpec::default()
        }),
    };
    leases
        .create(&PostParams::default(), &lease)
        .await
        .context("reflector creating a Lease")?;
    leases
        .delete(&name, &DeleteParams::default())
        .await
        .context("reflector deleting its Lease")?;

    let kind = |kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(IMG, "v1", kind), plural)
    };
    let repos = kind("ImageRepository", "imagerepositories");
    Api::<DynamicObject>::all_with(reflector.clone(), &repos)
        .list(&ListParams::default())
        .await
        .context("reflector listing ImageRepositories in all namespaces")?;
    let autos = kind("ImageUpdateAutomation", "imageupdateautomations");
    match Api::<DynamicObject>::all_with(reflector, &autos)
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(status)) if status.is_forbidden() => Ok(()),
        other => {
            anyhow::bail!("reflector listing ImageUpdateAutomations: expected 403, got {other:?}")
        }
    }
}
