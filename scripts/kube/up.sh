#!/usr/bin/env bash
# Starts a throwaway Kubernetes control plane in DIR: Debian's etcd + the
# kube-apiserver and kube-controller-manager cached by build.sh, all on
# 127.0.0.1 with free ports (several clusters can run side by side). No
# kubelet: Pods stay Pending until something writes their status.
#
#   scripts/kube/up.sh DIR      -> writes DIR/kubeconfig, prints its path
#   scripts/kube/down.sh DIR    -> stops everything up.sh started
#
# DIR afterwards: kubeconfig, api_url, pki/ (CA, serving, admin, SA keys),
# etcd/ (data), logs/{etcd,kube-apiserver,kube-controller-manager}.log,
# pids/*.pid. Progress goes to stderr; stdout is just the kubeconfig path.
# Binaries: $PGSR_KUBE_BIN, else the cache found by `build.sh --print-dir`.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
DIR="$(cd "$1" && pwd)"

BIN="${PGSR_KUBE_BIN:-}"
if [ -z "$BIN" ]; then
  BIN="$("$HERE/build.sh" --print-dir)" || {
    echo "ERROR: no cached kube-apiserver; run scripts/kube/build.sh first" >&2; exit 1; }
fi
ETCD="$(command -v etcd || true)"
[ -n "$ETCD" ] || { echo "ERROR: etcd not found (Debian package etcd-server; build.sh installs it)" >&2; exit 1; }
for b in kube-apiserver kube-controller-manager; do
  [ -x "$BIN/$b" ] || { echo "ERROR: $BIN/$b missing" >&2; exit 1; }
done

if [ -f "$DIR/pids/kube-apiserver.pid" ] && kill -0 "$(cat "$DIR/pids/kube-apiserver.pid")" 2>/dev/null; then
  echo "ERROR: a control plane is already running in $DIR (down.sh it first)" >&2; exit 1
fi

log() { echo "[kube-up $(date +%T)] $*" >&2; }
T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

PKI="$DIR/pki"; LOGS="$DIR/logs"; PIDS="$DIR/pids"
mkdir -p "$PKI" "$LOGS" "$PIDS"

# Fails the whole script (after stopping what was started) with a log tail.
die() {
  echo "ERROR: $*" >&2
  local f
  for f in "$LOGS"/*.log; do
    [ -f "$f" ] || continue
    echo "---- last lines of $f" >&2; tail -25 "$f" >&2
  done
  "$HERE/down.sh" "$DIR" >&2 || true
  exit 1
}

# --------------------------------------------------------------------- ports
# Bound-then-released ports; the OS does not hand the same one out again soon.
read -r P_ETCD P_PEER P_API P_KCM < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(4):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(*[s.getsockname()[1] for s in socks])
EOF
)

# ----------------------------------------------------------------------- PKI
if [ ! -f "$PKI/admin.crt" ]; then
  log "generating certificates"
  (
    cd "$PKI"
    # Python 3.13 verifies strictly (VERIFY_X509_STRICT): a CA needs a
    # critical keyUsage, every issued certificate an authority key id.
    openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days 3650 \
      -keyout ca.key -out ca.crt -subj "/CN=pg-schema-restore-test-ca" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    cat > serving.ext <<'EOF'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
    openssl req -new -nodes -newkey rsa:2048 -keyout serving.key -out serving.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -sha256 -days 3650 -extfile serving.ext -out serving.crt 2>/dev/null
    cat > client.ext <<'EOF'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
EOF
    openssl req -new -nodes -newkey rsa:2048 -keyout admin.key -out admin.csr \
      -subj "/O=system:masters/CN=admin" 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -sha256 -days 3650 -extfile client.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr
    chmod 600 ./*.key
  ) || die "openssl failed"
fi

# ---------------------------------------------------------------------- etcd
log "starting etcd on 127.0.0.1:$P_ETCD"
start() {  # start NAME CMD...: background, own session, pid + log in DIR
  local name="$1"; shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$PIDS/$name.pid"
}
alive() { kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

start etcd "$ETCD" --name default --data-dir "$DIR/etcd" --unsafe-no-fsync \
  --listen-client-urls "http://127.0.0.1:$P_ETCD" --advertise-client-urls "http://127.0.0.1:$P_ETCD" \
  --listen-peer-urls "http://127.0.0.1:$P_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$P_PEER" \
  --initial-cluster "default=http://127.0.0.1:$P_PEER" --initial-cluster-state new \
  --logger zap --log-level warn
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$P_ETCD/health" 2>/dev/null | grep -q '"health":"true"' && break
  alive etcd || die "etcd exited"
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$P_ETCD/health" >/dev/null 2>&1 || die "etcd not healthy after 10 s"
log "etcd healthy after $(elapsed)s"

# ------------------------------------------------------------ kube-apiserver
# Audit: what service accounts did (tests/kube/test_tenancy.py checks that the
# operator used every verb its chart grants it); nothing else is recorded.
cat > "$DIR/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
EOF
API_URL="https://127.0.0.1:$P_API"
log "starting kube-apiserver on $API_URL"
T_API=$(date +%s.%N)
start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$P_ETCD" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$P_API" \
  --insecure-port 0 --cert-dir "$DIR/apiserver-certs" \
  --tls-cert-file "$PKI/serving.crt" --tls-private-key-file "$PKI/serving.key" \
  --client-ca-file "$PKI/ca.crt" \
  --authorization-mode Node,RBAC --anonymous-auth=false \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$PKI/sa.pub" \
  --service-account-signing-key-file "$PKI/sa.key" \
  --api-audiences https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range 10.0.0.0/24 \
  --endpoint-reconciler-type none \
  --allow-privileged=true \
  --event-ttl 1h \
  --audit-policy-file "$DIR/audit-policy.yaml" --audit-log-path "$LOGS/audit.log" \
  --v 1

CURL_ADMIN=(curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key")
for _ in $(seq 1 600); do
  [ "$("${CURL_ADMIN[@]}" "$API_URL/readyz" 2>/dev/null)" = "ok" ] && break
  alive kube-apiserver || die "kube-apiserver exited"
  sleep 0.1
done
[ "$("${CURL_ADMIN[@]}" "$API_URL/readyz" 2>/dev/null)" = "ok" ] || die "kube-apiserver not ready after 60 s"
API_SECS=$(awk -v a="$T_API" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
log "kube-apiserver ready (/readyz) in ${API_SECS}s"

# ---------------------------------------------------------------- kubeconfig
b64() { base64 -w0 < "$1"; }
umask 077
cat > "$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: pgsr-test
  cluster:
    server: $API_URL
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: pgsr-test
  context:
    cluster: pgsr-test
    user: admin
    namespace: default
current-context: pgsr-test
EOF
umask 022
echo "$API_URL" > "$DIR/api_url"

# --------------------------------------------------- kube-controller-manager
# No --authentication/authorization-kubeconfig: its own /healthz stays
# open (always-allow path) and it does not look for a requestheader CA.
# All default controllers (job, garbagecollector, namespace, serviceaccount,
# serviceaccount-token...). The token controller needs the SA private key and
# root CA, else the ServiceAccount admission plugin rejects every Pod.
log "starting kube-controller-manager"
start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig "$DIR/kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$P_KCM" --port 0 --cert-dir "$DIR/kcm-certs" \
  --leader-elect=false --use-service-account-credentials=false \
  --controllers '*' \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --service-cluster-ip-range 10.0.0.0/24 \
  --concurrent-gc-syncs 5 \
  --v 1

# Ready for Pods: the token controller has given `default/default` a token.
for _ in $(seq 1 600); do
  if "${CURL_ADMIN[@]}" "$API_URL/api/v1/namespaces/default/serviceaccounts/default" 2>/dev/null \
      | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("secrets") else 1)' 2>/dev/null; then
    break
  fi
  alive kube-controller-manager || die "kube-controller-manager exited"
  sleep 0.1
done
"${CURL_ADMIN[@]}" "$API_URL/api/v1/namespaces/default/serviceaccounts/default" 2>/dev/null \
  | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("secrets") else 1)' \
  || die "kube-controller-manager did not create the default service account token in 60 s"

log "control plane up in $(elapsed)s (apiserver ready in ${API_SECS}s): $API_URL, KUBECONFIG=$DIR/kubeconfig"
echo "$DIR/kubeconfig"
