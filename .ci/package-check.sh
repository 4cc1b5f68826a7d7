#!/usr/bin/env bash
# Checks the Debian package built by `cargo deb`, with no systemd and no install: its metadata and
# files (dpkg-deb -I / -c), the unit (systemd-analyze verify, when available), that
# /etc/default/outcall names every OUTCALL_* variable of `outcall --help`, then runs the
# extracted binary with the extracted /etc/default/outcall (plus a temporary data directory and
# a free loopback port): /healthz answers 200, admin-password.txt appears with mode 0600 and logs
# in, and SIGTERM ends it with exit code 0. Bounded: at most ~2 minutes.
#
# Usage: .ci/package-check.sh [path/to/outcall_*.deb]   (default: the newest in target/debian/)
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "package-check: FAILED: $*" >&2
    exit 1
}

deb=${1:-$(ls -t target/debian/outcall_*.deb 2>/dev/null | head -n 1 || true)}
[ -n "$deb" ] && [ -f "$deb" ] || fail "no package (run cargo deb first)"
echo "package-check: $deb ($(du -h "$deb" | cut -f1))"

work=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# --- metadata and contents ---------------------------------------------------------------------
dpkg-deb -I "$deb"
dpkg-deb -c "$deb"
contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/outcall ./usr/lib/systemd/system/outcall.service ./etc/default/outcall; do
    grep -qE " $path\$" <<<"$contents" || fail "the package lacks $path"
done
# Secrets may go into the default file: root's only.
grep -qE '^-rw------- (root/root|0/0) .* \./etc/default/outcall$' <<<"$contents" \
    || fail "etc/default/outcall is not -rw------- root/root"
[ "$(dpkg-deb -f "$deb" Package)" = outcall ] || fail "the package is not named outcall"
dpkg-deb -f "$deb" Depends | grep -q adduser || fail "Depends lacks adduser (postinst runs it)"

dpkg-deb -x "$deb" "$work/root"
dpkg-deb -e "$deb" "$work/control"
grep -qx /etc/default/outcall "$work/control/conffiles" || fail "/etc/default/outcall is not a conffile"
grep -q 'adduser --system' "$work/control/postinst" || fail "postinst does not create the user"
grep -q 'deb-systemd-helper enable' "$work/control/postinst" || fail "postinst does not enable the unit"
grep -q 'deb-systemd-invoke $_dh_action' "$work/control/postinst" || fail "postinst does not start the unit"
grep -q 'rm -rf /var/lib/outcall' "$work/control/postrm" || fail "postrm does not purge the data"
for script in postinst postrm prerm; do
    [ -f "$work/control/$script" ] && sh -n "$work/control/$script"
done

unit="$work/root/usr/lib/systemd/system/outcall.service"
if command -v systemd-analyze >/dev/null 2>&1; then
    # verify checks that ExecStart's program exists: a copy of the unit names the extracted binary
    # (--root would need the host's targets in the extracted tree). Nothing else changes.
    mkdir "$work/unit"
    sed "s#^ExecStart=/usr/bin/outcall#ExecStart=$work/root/usr/bin/outcall#" "$unit" >"$work/unit/outcall.service"
    grep -q "^ExecStart=$work/root/usr/bin/outcall" "$work/unit/outcall.service" \
        || fail "the unit's ExecStart is not /usr/bin/outcall"
    # verify only warns about an unknown or misspelt key: any word about the unit fails too.
    verify=$(systemd-analyze verify "$work/unit/outcall.service" 2>&1) \
        || fail "systemd-analyze verify refused the unit: $verify"
    ! grep -q 'outcall.service' <<<"$verify" || fail "systemd-analyze verify: $verify"
    echo "package-check: systemd-analyze verify: the unit is valid"
    # The hardening's score (informational; lower is better, "OK" is below 4).
    systemd-analyze security --offline=true "$work/unit/outcall.service" 2>/dev/null | tail -n 1 || true
else
    echo "package-check: systemd-analyze verify skipped: systemd-analyze is not installed (Debian's systemd package)"
fi

# --- the default file against the binary's own flags -------------------------------------------
bin="$work/root/usr/bin/outcall"
defaults="$work/root/etc/default/outcall"
help_vars=$("$bin" --help | grep -oE 'OUTCALL_[A-Z0-9_]+' | sort -u)
file_vars=$(grep -oE '^#?OUTCALL_[A-Z0-9_]+=' "$defaults" | tr -d '#=' | sort -u)
missing=$(comm -23 <(echo "$help_vars") <(echo "$file_vars"))
unknown=$(comm -13 <(echo "$help_vars") <(echo "$file_vars"))
[ -z "$missing" ] || fail "etc/default/outcall does not list: $(echo $missing)"
[ -z "$unknown" ] || fail "etc/default/outcall lists variables outcall does not know: $(echo $unknown)"
echo "package-check: etc/default/outcall lists all $(echo "$help_vars" | wc -l) OUTCALL_* variables"

# --- run the extracted binary as the unit would ------------------------------------------------
vars=()
while IFS= read -r line; do vars+=("$line"); done < <(grep -E '^OUTCALL_[A-Z0-9_]+=' "$defaults")
grep -qx 'OUTCALL_LISTEN=.*' <<<"$(printf '%s\n' "${vars[@]}")" || fail "OUTCALL_LISTEN is not set"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data="$work/data"
# A clean environment and the unit's UMask; the unit's Environment= then the file's variables
# (EnvironmentFile wins), then the check's own address and data directory.
(
    umask 077
    exec env -i PATH=/usr/bin:/bin HOME="$work" OUTCALL_DATA_DIR=/var/lib/outcall "${vars[@]}" \
        OUTCALL_LISTEN="127.0.0.1:$port" OUTCALL_DATA_DIR="$data" "$bin"
) >"$work/outcall.log" 2>&1 &
pid=$!
base="http://127.0.0.1:$port"

healthy=""
for _ in $(seq 1 300); do # 300 × 0.2 s
    kill -0 "$pid" 2>/dev/null || { cat "$work/outcall.log"; fail "outcall exited at start"; }
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/healthz" || true)" = 200 ]; then
        healthy=1
        break
    fi
    sleep 0.2
done
[ -n "$healthy" ] || { cat "$work/outcall.log"; fail "/healthz did not answer 200 within 60 s"; }
echo "package-check: /healthz 200 on $base"

password_file="$data/admin-password.txt"
for _ in $(seq 1 50); do [ -s "$password_file" ] && break; sleep 0.2; done
[ -s "$password_file" ] || fail "no $password_file"
[ "$(stat -c %a "$password_file")" = 600 ] || fail "$password_file has mode $(stat -c %a "$password_file"), not 600"
[ "$(stat -c %a "$data")" = 700 ] || fail "$data has mode $(stat -c %a "$data"), not 700"
password=$(cat "$password_file")
login=$(curl -s --max-time 10 -X POST "$base/api/sessions" -H 'Content-Type: application/json' \
    -d "{\"login\":\"admin\",\"password\":\"$password\"}")
grep -q '"token"' <<<"$login" || fail "the saved admin password does not log in: $login"
echo "package-check: admin-password.txt (0600) logs in"

kill -TERM "$pid"
status=""
for _ in $(seq 1 300); do # 300 × 0.1 s, well under the unit's TimeoutStopSec
    if ! kill -0 "$pid" 2>/dev/null; then
        set +e
        wait "$pid"
        status=$?
        set -e
        break
    fi
    sleep 0.1
done
[ -n "$status" ] || { cat "$work/outcall.log"; fail "outcall still runs 30 s after SIGTERM"; }
pid=""
[ "$status" = 0 ] || { cat "$work/outcall.log"; fail "outcall exited $status after SIGTERM"; }
echo "package-check: SIGTERM: exit 0"
echo "package-check: ok"
