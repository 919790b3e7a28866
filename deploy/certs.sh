#!/usr/bin/env bash
# Issue the fleet's TLS certificates and say where each file goes.
#
#   deploy/certs.sh DIR COLLECTOR_NAME AGENT_HOST...
#
#   DIR             where the CA and certificates are kept. DIR/ca-key.pem is the fleet's
#                   master key: keep DIR on the admin machine, root-only and backed up; never
#                   copy ca-key.pem to a monitored host or to the collector.
#   COLLECTOR_NAME  the DNS name (or IP address) agents use in [collector] url; several
#                   comma-separated, e.g. collector.example.com,10.0.0.5
#   AGENT_HOST...   one name per database host. It becomes the host's identity on the
#                   collector (taken from the certificate, never from what the agent sends)
#                   and is what [groups] and [[overrides]] patterns match.
#
# Runs `backwatch-collector certs --dir DIR --collector-name NAME... --agent HOST...` (set
# BACKWATCH_COLLECTOR to the binary when it is not on PATH). Running it again with new hosts
# reuses the CA in DIR and adds their certificates; an existing agent's certificate is
# replaced. An existing collector.pem is kept as it is, so a changed COLLECTOR_NAME has no
# effect: move collector.pem and collector-key.pem away first to re-issue it.
# Validity: 365 days for collector and agents (BACKWATCH_CERT_DAYS to change), 10 years for
# the CA. Exit codes: 64 usage, 69 binary not found, otherwise the binary's.
set -euo pipefail

usage() {
    echo "usage: $0 DIR COLLECTOR_NAME[,NAME...] AGENT_HOST..." >&2
    echo "       (the comments at the top of $0 explain each argument)" >&2
    exit 64
}
case "${1:-}" in -h | --help) usage ;; esac
[ $# -ge 3 ] || usage

dir=$1
collector=$2
shift 2

args=(certs --dir "$dir" --days "${BACKWATCH_CERT_DAYS:-365}")
IFS=',' read -r -a names <<<"$collector"
for n in "${names[@]}"; do
    if [ -n "$n" ]; then args+=(--collector-name "$n"); fi
done
for host in "$@"; do
    case "$host" in
        '' | */* | .* | *' '*)
            echo "certs.sh: \"$host\" is not a host name" >&2
            exit 64
            ;;
    esac
    args+=(--agent "$host")
done

bin=${BACKWATCH_COLLECTOR:-backwatch-collector}
if ! command -v "$bin" >/dev/null 2>&1; then
    echo "certs.sh: $bin not found (install it or set BACKWATCH_COLLECTOR=/path/to/backwatch-collector)" >&2
    exit 69
fi

# The binary asks for keys 0600 and certificates 0644; umask 077 keeps DIR and all of it
# private to the admin until the files are installed with their own modes.
umask 077
"$bin" "${args[@]}"

cat <<EOF

Where each file goes: copy it to its host (scp, configuration management), then install it
in /etc/backwatch/ owned by backwatch:backwatch, certificates mode 0644, keys mode 0600.
The target names are the ones deploy/agent.toml and deploy/collector.toml use.

  collector host:
    $dir/ca.pem -> /etc/backwatch/ca.pem (0644)
    $dir/collector.pem -> /etc/backwatch/collector.pem (0644)
    $dir/collector-key.pem -> /etc/backwatch/collector-key.pem (0600)
EOF
for host in "$@"; do
    cat <<EOF

  agent host $host:
    $dir/ca.pem -> /etc/backwatch/ca.pem (0644)
    $dir/agents/$host.pem -> /etc/backwatch/agent.pem (0644)
    $dir/agents/$host-key.pem -> /etc/backwatch/agent-key.pem (0600)
EOF
done
cat <<EOF

  e.g. on an agent host, with the three files copied to the current directory:
    install -o backwatch -g backwatch -m 0644 ca.pem /etc/backwatch/ca.pem
    install -o backwatch -g backwatch -m 0644 $1.pem /etc/backwatch/agent.pem
    install -o backwatch -g backwatch -m 0600 $1-key.pem /etc/backwatch/agent-key.pem

Keep $dir/ca-key.pem where it is: it signs new agents and must never leave this machine.
EOF
