#!/usr/bin/env bash
# Loopback services for integration tests: OCI registries, Git servers, HTTP CONNECT proxies.
#
# Usage: hack/testenv/services.sh up|down
#
# `up` installs the missing Debian packages, builds testenv-server (token server, paging proxy; crates/testenv),
# generates keys and certificates, starts every service on a free 127.0.0.1 port with fresh data under
# $TESTENV_DIR/services, and writes $TESTENV_DIR/services.env. `down` stops the processes it started.
# Everything runs as root (sshd needs it).
#
# Published variables (`export K=V` lines in $TESTENV_DIR/services.env):
#
#   Shared material
#   TESTENV_CA_CERT            PEM CA certificate that signed every TLS server and the client certificate
#   TESTENV_CLIENT_CERT        PEM client certificate (for mutual TLS), signed by TESTENV_CA_CERT
#   TESTENV_CLIENT_KEY         PEM (PKCS#8) key of TESTENV_CLIENT_CERT
#   TESTENV_USERNAME           user name accepted by every authenticating service (registry, Git HTTP, proxy)
#   TESTENV_PASSWORD           its password
#   TESTENV_HTPASSWD           bcrypt htpasswd file holding that user (as used by the registry and nginx)
#
#   OCI registries (Debian docker-registry 2.8), each a host:port; push with TESTENV_USERNAME/PASSWORD
#   TESTENV_REGISTRY_ANON      plain HTTP, no auth
#   TESTENV_REGISTRY_BASIC     plain HTTP, htpasswd basic auth
#   TESTENV_REGISTRY_TOKEN     plain HTTP, bearer tokens from the token server (Docker Hub / GHCR challenge flow)
#   TESTENV_REGISTRY_TOKEN_REALM    the token server's URL (the realm of the Bearer challenge)
#   TESTENV_REGISTRY_TOKEN_SERVICE  the service name in the challenge and the tokens' audience
#   TESTENV_REGISTRY_PAGED     plain HTTP, no auth: TESTENV_REGISTRY_ANON behind a proxy (testenv-server paginate)
#                              that pages tag lists like Docker Hub and GHCR: sorted, `n` and `last` honoured, a
#                              `Link: <...>; rel="next"` header when more follow (distribution 2.8 ignores `n`)
#   TESTENV_REGISTRY_PAGED_DEFAULT_N  its page size when the client gives no `n`
#   TESTENV_REGISTRY_TLS       HTTPS (server certificate from TESTENV_CA_CERT), no auth
#   TESTENV_REGISTRY_MTLS      HTTPS requiring a client certificate signed by TESTENV_CA_CERT, no other auth
#
#   Git: every transport serves the bare repositories in TESTENV_GIT_ROOT; a repository NAME is at
#   <base URL>/NAME.git. Push works on every transport except TESTENV_GIT_HTTP_URL (read-only).
#   TESTENV_GIT_ROOT           directory of the bare repositories
#   TESTENV_GIT_FILE_URL       file:// base URL
#   TESTENV_GIT_DAEMON_URL     git:// base URL (git daemon, receive-pack enabled)
#   TESTENV_GIT_HTTP_URL       http:// base URL, git http-backend, anonymous, read-only
#   TESTENV_GIT_HTTP_BASIC_URL http:// base URL, basic auth (TESTENV_USERNAME/PASSWORD)
#   TESTENV_GIT_HTTP_BEARER_URL http:// base URL, `Authorization: Bearer $TESTENV_GIT_BEARER_TOKEN`
#   TESTENV_GIT_BEARER_TOKEN   the bearer token accepted there
#   TESTENV_GIT_HTTPS_URL      https:// base URL (certificate from TESTENV_CA_CERT), basic auth
#   TESTENV_GIT_SSH_URL        ssh:// base URL (sshd, user root, public-key auth only)
#   TESTENV_GIT_SSH_KEY        ed25519 private key (OpenSSH format) in authorized_keys; .pub next to it
#   TESTENV_GIT_SSH_KEY_RSA    RSA private key in authorized_keys
#   TESTENV_GIT_SSH_KEY_ECDSA  ECDSA P-256 private key in authorized_keys
#   TESTENV_GIT_SSH_KNOWN_HOSTS known_hosts file with the server's host keys ([127.0.0.1]:PORT entries)
#
#   HTTP CONNECT proxies (tinyproxy), each an http:// URL without credentials
#   TESTENV_PROXY_URL          no auth
#   TESTENV_PROXY_AUTH_URL     basic auth (TESTENV_USERNAME/PASSWORD); wrong or missing credentials get 407

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SVC="$TESTENV_DIR/services"
ENV_FILE="$TESTENV_DIR/services.env"
# Every process name of this component starts with this prefix, so `down` stops only ours.
P=svc-

PKGS=(docker-registry apache2-utils git openssh-server openssh-client tinyproxy-bin nginx fcgiwrap openssl python3)

# port VAR: set VAR to a free port not handed out before in this run (free_port may repeat itself: nothing
# holds a port until its service binds it).
USED_PORTS=" "
port() {
  local p i
  for ((i = 0; i < 50; i++)); do
    p=$(free_port)
    case $USED_PORTS in *" $p "*) continue ;; esac
    USED_PORTS+="$p "
    printf -v "$1" '%s' "$p"
    return 0
  done
  die "no free port found"
}

gen_certs() {
  local d=$SVC/pki
  mkdir -p "$d"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  run_or_die "CA generation" openssl req -x509 "${ec[@]}" -keyout "$d/ca.key" -out "$d/ca.pem" -days 30 \
    -subj /CN=testenv-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
  local name ext
  for name in server client; do
    if [ $name = server ]; then
      ext='subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth'
    else
      ext='extendedKeyUsage=clientAuth'
    fi
    run_or_die "$name key" openssl req "${ec[@]}" -keyout "$d/$name.key" -out "$d/$name.csr" -subj "/CN=testenv-$name"
    printf "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n$ext\n" >"$d/$name.ext"
    run_or_die "$name certificate" openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
      -CAcreateserial -days 30 -out "$d/$name.pem" -extfile "$d/$name.ext"
  done
  # The token server signs JWTs with this key; its self-signed certificate is the registry's rootcertbundle.
  run_or_die "token signing key" openssl req -x509 "${ec[@]}" -keyout "$d/token.key" -out "$d/token.pem" \
    -days 30 -subj /CN=testenv-token-issuer
}

# start_registry NAME PORT AUTH_YAML TLS_YAML
start_registry() {
  local name=$1 port=$2 auth=$3 tls=$4
  local d=$SVC/registry-$name
  mkdir -p "$d/data"
  cat >"$d/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $d/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: testenv-$name-$RANDOM$RANDOM
$tls
$auth
EOF
  start_bg "${P}registry-$name" docker-registry serve "$d/config.yml"
}

start_registries() {
  local pki=$SVC/pki
  port REG_ANON
  start_registry anon "$REG_ANON" "" ""
  port REG_BASIC
  start_registry basic "$REG_BASIC" "auth:
  htpasswd:
    realm: testenv-registry
    path: $SVC/htpasswd" ""
  port TOKEN_PORT
  TOKEN_REALM="http://127.0.0.1:$TOKEN_PORT/token"
  start_bg "${P}token-server" "$TESTENV_SERVER" token --listen "127.0.0.1:$TOKEN_PORT" \
    --key "$pki/token.key" --cert "$pki/token.pem" --issuer testenv-token-issuer \
    --username "$TESTENV_USERNAME" --password "$TESTENV_PASSWORD"
  port REG_TOKEN
  start_registry token "$REG_TOKEN" "auth:
  token:
    realm: $TOKEN_REALM
    service: testenv-registry
    issuer: testenv-token-issuer
    rootcertbundle: $pki/token.pem" ""
  local tls="  tls:
    certificate: $pki/server.pem
    key: $pki/server.key"
  # distribution 2.8 ignores `n` on tag lists and returns them unsorted; Docker Hub and GHCR page them.
  port REG_PAGED
  start_bg "${P}registry-paged" "$TESTENV_SERVER" paginate --listen "127.0.0.1:$REG_PAGED" \
    --upstream "http://127.0.0.1:$REG_ANON" --default-page-size "$PAGED_DEFAULT_N"
  port REG_TLS
  start_registry tls "$REG_TLS" "" "$tls"
  port REG_MTLS
  start_registry mtls "$REG_MTLS" "" "$tls
    clientcas:
      - $pki/ca.pem"
}

start_git() {
  GIT_ROOT=$SVC/git
  mkdir -p "$GIT_ROOT"
  port GIT_DAEMON
  start_bg "${P}git-daemon" git daemon --reuseaddr --listen=127.0.0.1 --port="$GIT_DAEMON" \
    --base-path="$GIT_ROOT" --export-all --enable=receive-pack --informative-errors "$GIT_ROOT"

  # git http-backend behind nginx (through fcgiwrap): anonymous read-only, basic auth, bearer token, HTTPS.
  local d=$SVC/nginx
  mkdir -p "$d/tmp"
  local backend
  backend=$(git --exec-path)/git-http-backend
  start_bg "${P}fcgiwrap" fcgiwrap -c 4 -s "unix:$d/fcgiwrap.sock"
  port GIT_HTTP
  port GIT_HTTP_BASIC
  port GIT_HTTP_BEARER
  port GIT_HTTPS
  GIT_BEARER_TOKEN=testenv-git-token-$RANDOM$RANDOM
  # REMOTE_USER tells http-backend the client is authenticated, which enables receive-pack (push).
  local cgi="include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $backend;
      fastcgi_param GIT_PROJECT_ROOT $GIT_ROOT;
      fastcgi_param GIT_HTTP_EXPORT_ALL \"\";
      fastcgi_param PATH_INFO \$uri;
      fastcgi_param GIT_PROTOCOL \$http_git_protocol;
      fastcgi_pass unix:$d/fcgiwrap.sock;"
  cat >"$d/nginx.conf" <<EOF
user root;
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $TESTENV_DIR/logs/${P}nginx.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_max_body_size 0;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  fastcgi_buffering off;
  map \$http_authorization \$bearer_ok { "Bearer $GIT_BEARER_TOKEN" 1; default 0; }
  server {
    listen 127.0.0.1:$GIT_HTTP;
    location / {
      $cgi
    }
  }
  server {
    listen 127.0.0.1:$GIT_HTTP_BASIC;
    auth_basic testenv-git;
    auth_basic_user_file $SVC/htpasswd;
    location / {
      fastcgi_param REMOTE_USER \$remote_user;
      $cgi
    }
  }
  server {
    listen 127.0.0.1:$GIT_HTTP_BEARER;
    location / {
      if (\$bearer_ok = 0) {
        add_header WWW-Authenticate 'Bearer realm="testenv-git"' always;
        return 401;
      }
      fastcgi_param REMOTE_USER token;
      $cgi
    }
  }
  server {
    listen 127.0.0.1:$GIT_HTTPS ssl;
    ssl_certificate $SVC/pki/server.pem;
    ssl_certificate_key $SVC/pki/server.key;
    auth_basic testenv-git;
    auth_basic_user_file $SVC/htpasswd;
    location / {
      fastcgi_param REMOTE_USER \$remote_user;
      $cgi
    }
  }
}
EOF
  start_bg "${P}nginx" nginx -e "$TESTENV_DIR/logs/${P}nginx.log" -p "$d" -c "$d/nginx.conf"

  # sshd: root with public keys only; sessions run git-upload-pack / git-receive-pack on absolute paths.
  local s=$SVC/ssh
  mkdir -p "$s" /run/sshd
  local t
  for t in ed25519 rsa ecdsa; do
    run_or_die "ssh host key" ssh-keygen -q -t $t -N '' -C testenv-host -f "$s/host_$t"
    run_or_die "ssh client key" ssh-keygen -q -t $t -N '' -C testenv-client-$t -f "$s/client_$t"
  done
  cat "$s"/client_*.pub >"$s/authorized_keys"
  port GIT_SSH
  for t in ed25519 rsa ecdsa; do
    printf '[127.0.0.1]:%s %s\n' "$GIT_SSH" "$(cut -d' ' -f1,2 "$s/host_$t.pub")"
  done >"$s/known_hosts"
  cat >"$s/sshd_config" <<EOF
Port $GIT_SSH
ListenAddress 127.0.0.1
HostKey $s/host_ed25519
HostKey $s/host_rsa
HostKey $s/host_ecdsa
PidFile $s/sshd.pid
AuthorizedKeysFile $s/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
AcceptEnv GIT_PROTOCOL
MaxStartups 100:30:200
LogLevel INFO
EOF
  start_bg "${P}sshd" /usr/sbin/sshd -D -e -f "$s/sshd_config"
}

start_proxies() {
  local d=$SVC/proxy
  mkdir -p "$d"
  port PROXY
  port PROXY_AUTH
  local name port extra
  for name in plain auth; do
    port=$PROXY extra=''
    [ $name = auth ] && port=$PROXY_AUTH extra="BasicAuth $TESTENV_USERNAME $TESTENV_PASSWORD"
    cat >"$d/$name.conf" <<EOF
Port $port
Listen 127.0.0.1
Timeout 120
MaxClients 100
Allow 127.0.0.1
LogLevel Notice
$extra
EOF
    start_bg "${P}proxy-$name" tinyproxy -d -c "$d/$name.conf"
  done
}

PAGED_DEFAULT_N=50

build_testenv_server() {
  # Tests of these scripts run inside `cargo test`, which has built the binary already.
  if [ -n "${TESTENV_SERVER:-}" ] && [ -x "$TESTENV_SERVER" ]; then return 0; fi
  log "building testenv-server (cargo build -p testenv)"
  local target=${CARGO_TARGET_DIR:-target}
  (cd "$TESTENV_REPO" && run_or_die "cargo build of testenv-server" \
    cargo build -q -p testenv --bin testenv-server)
  case $target in /*) ;; *) target=$TESTENV_REPO/$target ;; esac
  TESTENV_SERVER=$target/debug/testenv-server
  [ -x "$TESTENV_SERVER" ] || die "testenv-server not found at $TESTENV_SERVER"
}

up() {
  need_pkgs "${PKGS[@]}"
  stop_all "$P"
  rm -rf "$SVC" "$ENV_FILE"
  mkdir -p "$SVC"
  build_testenv_server

  TESTENV_USERNAME=testenv
  TESTENV_PASSWORD=pw-$RANDOM$RANDOM
  run_or_die "htpasswd" htpasswd -Bbc "$SVC/htpasswd" "$TESTENV_USERNAME" "$TESTENV_PASSWORD"
  gen_certs
  start_registries
  start_git
  start_proxies

  wait_port "${P}registry-anon" "$REG_ANON"
  wait_port "${P}registry-basic" "$REG_BASIC"
  wait_port "${P}token-server" "$TOKEN_PORT"
  wait_port "${P}registry-token" "$REG_TOKEN"
  wait_port "${P}registry-paged" "$REG_PAGED"
  wait_port "${P}registry-tls" "$REG_TLS"
  wait_port "${P}registry-mtls" "$REG_MTLS"
  wait_port "${P}git-daemon" "$GIT_DAEMON"
  wait_port "${P}nginx" "$GIT_HTTP"
  wait_port "${P}nginx" "$GIT_HTTPS"
  wait_port "${P}sshd" "$GIT_SSH"
  wait_port "${P}proxy-plain" "$PROXY"
  wait_port "${P}proxy-auth" "$PROXY_AUTH"
  [ -S "$SVC/nginx/fcgiwrap.sock" ] || die "fcgiwrap did not create its socket (see $TESTENV_DIR/logs/${P}fcgiwrap.log)"

  local pki=$SVC/pki s=$SVC/ssh
  cat >"$ENV_FILE.tmp" <<EOF
export TESTENV_CA_CERT=$pki/ca.pem
export TESTENV_CLIENT_CERT=$pki/client.pem
export TESTENV_CLIENT_KEY=$pki/client.key
export TESTENV_USERNAME=$TESTENV_USERNAME
export TESTENV_PASSWORD=$TESTENV_PASSWORD
export TESTENV_HTPASSWD=$SVC/htpasswd
export TESTENV_REGISTRY_ANON=127.0.0.1:$REG_ANON
export TESTENV_REGISTRY_BASIC=127.0.0.1:$REG_BASIC
export TESTENV_REGISTRY_TOKEN=127.0.0.1:$REG_TOKEN
export TESTENV_REGISTRY_TOKEN_REALM=$TOKEN_REALM
export TESTENV_REGISTRY_TOKEN_SERVICE=testenv-registry
export TESTENV_REGISTRY_PAGED=127.0.0.1:$REG_PAGED
export TESTENV_REGISTRY_PAGED_DEFAULT_N=$PAGED_DEFAULT_N
export TESTENV_REGISTRY_TLS=127.0.0.1:$REG_TLS
export TESTENV_REGISTRY_MTLS=127.0.0.1:$REG_MTLS
export TESTENV_GIT_ROOT=$GIT_ROOT
export TESTENV_GIT_FILE_URL=file://$GIT_ROOT
export TESTENV_GIT_DAEMON_URL=git://127.0.0.1:$GIT_DAEMON
export TESTENV_GIT_HTTP_URL=http://127.0.0.1:$GIT_HTTP
export TESTENV_GIT_HTTP_BASIC_URL=http://127.0.0.1:$GIT_HTTP_BASIC
export TESTENV_GIT_HTTP_BEARER_URL=http://127.0.0.1:$GIT_HTTP_BEARER
export TESTENV_GIT_BEARER_TOKEN=$GIT_BEARER_TOKEN
export TESTENV_GIT_HTTPS_URL=https://127.0.0.1:$GIT_HTTPS
export TESTENV_GIT_SSH_URL=ssh://root@127.0.0.1:$GIT_SSH$GIT_ROOT
export TESTENV_GIT_SSH_KEY=$s/client_ed25519
export TESTENV_GIT_SSH_KEY_RSA=$s/client_rsa
export TESTENV_GIT_SSH_KEY_ECDSA=$s/client_ecdsa
export TESTENV_GIT_SSH_KNOWN_HOSTS=$s/known_hosts
export TESTENV_PROXY_URL=http://127.0.0.1:$PROXY
export TESTENV_PROXY_AUTH_URL=http://127.0.0.1:$PROXY_AUTH
EOF
  mv "$ENV_FILE.tmp" "$ENV_FILE"
  log "services up; variables in $ENV_FILE"
}

down() {
  stop_all "$P"
  rm -f "$ENV_FILE"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *) die "usage: $0 up|down" ;;
esac
