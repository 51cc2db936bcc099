#!/usr/bin/env bash
# Installs what `ioc` needs to run its embedded services on a Debian machine:
#   Mosquitto, PostgreSQL (+ server headers), TimescaleDB for that PostgreSQL,
#   the unprivileged system user that owns the private clusters, and the .venv.
#
# Idempotent: every step checks first and does nothing when its work is already done,
# so a re-run takes well under 5 seconds. Stamps and logs live in .runtime/setup/,
# source builds in .runtime/build/.
#
# Environment overrides:
#   IOC_PG_MAJOR     PostgreSQL major version to target (default: newest installed, else Debian's default)
#   IOC_SYSTEM_USER  user that runs private clusters when `ioc` is started as root (default: ioc)
#   IOC_PYTHON       interpreter used to create .venv (default: python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNTIME="$ROOT/.runtime"
STAMPS="$RUNTIME/setup"
LOGS="$STAMPS/logs"
BUILD="$RUNTIME/build"
VENV="$ROOT/.venv"
IOC_USER="${IOC_SYSTEM_USER:-ioc}"
PYTHON="${IOC_PYTHON:-python3}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
TRIXIE_SRC_LIST=/etc/apt/sources.list.d/ioc-debian-trixie-src.sources
export DEBIAN_FRONTEND=noninteractive

T0=$SECONDS
exec 3>&2  # the terminal's stderr, for messages from inside logged commands
say() { printf '[setup] %-12s %s\n' "$1" "$2"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

manual_help() {
    cat >&3 <<EOF
[setup] ERROR: $1
[setup] This script installs packages automatically only on Debian, as root or with passwordless sudo.
[setup] Install these by hand instead (names as on Debian/Ubuntu):
[setup]   python3-venv, mosquitto, mosquitto-clients, mosquitto-dev, libmosquitto-dev, a C compiler,
[setup]   nats-server, iproute2, socat (the distributed ingest path and its multi-host test),
[setup]   postgresql-15 (or newer) with postgresql-contrib,
[setup]   and TimescaleDB for that PostgreSQL (https://docs.timescale.com/self-hosted/latest/install/),
[setup] then create the venv:  python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'
[setup] Or run the whole stack in containers:  docker compose up -d   (see deploy/README.md)
EOF
    exit 1
}

# ---------------------------------------------------------------- helpers
# Privileges are needed only when something must be installed or created: a run with nothing to do
# works for any user.
CAN_ROOT=0
if ((EUID == 0)) || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; then
    CAN_ROOT=1
fi
as_root() {
    ((CAN_ROOT)) || manual_help "'$*' needs root, and this is neither root nor passwordless sudo."
    if ((EUID == 0)); then "$@"; else sudo -n "$@"; fi
}

# Run a command with its output in a log file; on failure show the log's tail and stop.
logged() {
    local name="$1"; shift
    local log="$LOGS/$name.log"
    printf '\n=== %s: %s\n' "$(date -Is)" "$*" >>"$log"
    if ! "$@" >>"$log" 2>&1; then
        printf '[setup] ERROR: %s failed; last lines of %s:\n' "$*" "$log" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
}

APT_UPDATED=0
apt_get() { as_root env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0 "$@"; }
apt_update_once() {
    if ((APT_UPDATED == 0)); then
        logged apt apt_get update
        APT_UPDATED=1
    fi
}
# Prints the packages among "$@" that are not installed (cheap: one dpkg-query call).
missing_pkgs() {
    local installed
    installed="$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "$@" 2>/dev/null | awk '$2 == "ii" {print $1}')"
    local p
    for p in "$@"; do
        grep -qxF "$p" <<<"$installed" || printf '%s\n' "$p"
    done
}
apt_candidate() {
    apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v '^(none)$' || true
}
install_pkgs() {  # step-name pkgs...
    local step="$1"; shift
    local missing
    missing="$(missing_pkgs "$@" | tr '\n' ' ')"
    missing="${missing% }"
    if [[ -z "$missing" ]]; then
        say "$step" "skip: already installed ($*)"
        return
    fi
    apt_update_once
    # shellcheck disable=SC2086  # word splitting of the package list is intended
    logged apt apt_get install --no-install-recommends $missing
    say "$step" "installed: $missing"
}

# ---------------------------------------------------------------- 1. platform
[[ -r /etc/debian_version ]] || manual_help "this is not a Debian system (/etc/debian_version is missing)."
mkdir -p "$LOGS" "$BUILD"
if ((EUID == 0)); then who=root; elif ((CAN_ROOT)); then who="$(id -un) with sudo"; else who="$(id -un), no sudo: fails if anything must be installed"; fi
say platform "Debian $(cat /etc/debian_version), $who"

# ---------------------------------------------------------------- 2. packages
install_pkgs packages mosquitto mosquitto-clients postgresql postgresql-contrib \
    cmake build-essential python3-venv dpkg-dev
# Headers of the broker's ACL plugin (deploy/mosquitto/ioc_acl.c), which the embedded runtime builds on first use.
install_pkgs acl-plugin mosquitto-dev libmosquitto-dev
# The distributed ingest path and its multi-host test (tests/integration/test_multihost.py): NATS nodes, network
# namespaces, and a relay from the test hosts' bridge to the test's database.
install_pkgs multihost nats-server iproute2 socat

# ---------------------------------------------------------------- 3. PostgreSQL headers
if [[ -n "${IOC_PG_MAJOR:-}" ]]; then
    PGMAJOR="$IOC_PG_MAJOR"
else
    PGMAJOR="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' 2>/dev/null \
        | awk -F/ '{print $5}' | sort -n | tail -n 1)"
fi
[[ -n "$PGMAJOR" && -x "/usr/lib/postgresql/$PGMAJOR/bin/postgres" ]] \
    || die "no PostgreSQL server found under /usr/lib/postgresql (IOC_PG_MAJOR=${IOC_PG_MAJOR:-unset})"
PGBIN="/usr/lib/postgresql/$PGMAJOR/bin"
install_pkgs pg-headers "postgresql-server-dev-$PGMAJOR"
PG_CONFIG="$PGBIN/pg_config"
[[ -x "$PG_CONFIG" ]] || PG_CONFIG="$(command -v pg_config)"
"$PG_CONFIG" --version | grep -q "PostgreSQL $PGMAJOR\." \
    || die "$PG_CONFIG reports '$("$PG_CONFIG" --version)', expected PostgreSQL $PGMAJOR"
PG_EXTDIR="$("$PG_CONFIG" --sharedir)/extension"
PG_LIBDIR="$("$PG_CONFIG" --pkglibdir)"

# ---------------------------------------------------------------- 4. system user + runtime folder
# PostgreSQL refuses to run as root: when `ioc` runs as root it starts its private cluster
# as $IOC_USER (runuser -u $IOC_USER --), so .runtime/ must belong to that user and every
# parent folder of the checkout must be traversable (o+x).
user_notes=()
if ! id -u "$IOC_USER" >/dev/null 2>&1; then
    as_root useradd --system --no-create-home --shell /usr/sbin/nologin "$IOC_USER"
    user_notes+=("created system user $IOC_USER")
fi
if ((EUID == 0)); then
    if [[ "$(stat -c %U "$RUNTIME")" != "$IOC_USER" ]]; then
        chown "$IOC_USER:$IOC_USER" "$RUNTIME"
        chmod 0775 "$RUNTIME"
        user_notes+=("chown $IOC_USER $RUNTIME")
    fi
    dir="$ROOT"
    while [[ "$dir" != / ]]; do
        if [[ "$(stat -c %A "$dir" | cut -c10)" != [xt] ]]; then
            chmod o+x "$dir"
            user_notes+=("chmod o+x $dir")
        fi
        dir="$(dirname "$dir")"
    done
fi
if ((${#user_notes[@]})); then
    say user "$(IFS=';'; echo "${user_notes[*]}")"
else
    say user "skip: $IOC_USER exists$( ((EUID == 0)) && echo ", $RUNTIME owned by it")"
fi

# ---------------------------------------------------------------- 5. TimescaleDB
as_cluster_user() { if ((EUID == 0)); then runuser -u "$IOC_USER" -- "$@"; else "$@"; fi; }

# Throwaway cluster: preload timescaledb, create the extension and a hypertable.
verify_timescaledb() {
    local tmp
    tmp="$(mktemp -d /tmp/ioc-tsdb-check.XXXXXX)"
    ((EUID == 0)) && chown "$IOC_USER" "$tmp"
    local cleanup="as_cluster_user '$PGBIN/pg_ctl' -D '$tmp/data' -m immediate stop >/dev/null 2>&1 || true; rm -rf '$tmp'"
    # shellcheck disable=SC2064  # expand now: $tmp is local
    trap "$cleanup" EXIT
    logged tsdb-check as_cluster_user "$PGBIN/initdb" -D "$tmp/data" -U ioc -A trust --no-sync
    logged tsdb-check as_cluster_user "$PGBIN/pg_ctl" -D "$tmp/data" -l "$tmp/pg.log" -w -t 60 \
        -o "-c listen_addresses='' -c unix_socket_directories='$tmp' -c shared_preload_libraries=timescaledb" \
        start
    local out
    out="$(as_cluster_user "$PGBIN/psql" -h "$tmp" -U ioc -d postgres -X -q -A -t -v ON_ERROR_STOP=1 <<'SQL' 2>&1
CREATE EXTENSION timescaledb;
CREATE TABLE setup_check (ts timestamptz NOT NULL, device text NOT NULL, value double precision);
SELECT count(*) FROM create_hypertable('setup_check', 'ts');
INSERT INTO setup_check SELECT now() - i * interval '1 minute', 'd1', i FROM generate_series(1, 1000) AS i;
SELECT extversion || ' license=' || current_setting('timescaledb.license') || ' chunks='
       || (SELECT count(*) FROM show_chunks('setup_check'))
  FROM pg_extension WHERE extname = 'timescaledb';
SQL
)" || { echo "$out" >>"$LOGS/tsdb-check.log"; cat "$tmp/pg.log" >>"$LOGS/tsdb-check.log" 2>/dev/null;
        die "TimescaleDB check failed: $(tail -n 3 <<<"$out"); see $LOGS/tsdb-check.log"; }
    eval "$cleanup"
    trap - EXIT
    TSDB_CHECK="$(tail -n 1 <<<"$out")"
}

build_timescaledb_from_source() {
    [[ -f "$KEYRING" ]] || die "$KEYRING is missing: apt-get install debian-archive-keyring"
    local need_update=0
    if [[ ! -f "$TRIXIE_SRC_LIST" ]]; then
        as_root tee "$TRIXIE_SRC_LIST" >/dev/null <<EOF
# Added by ioc scripts/setup.sh: Debian 13 source packages only (to build TimescaleDB
# for the local PostgreSQL); no binary packages come from here.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: $KEYRING
EOF
        need_update=1
    elif [[ -z "$(apt-cache showsrc timescaledb 2>/dev/null)" ]]; then
        need_update=1
    fi
    if ((need_update)); then
        logged apt apt_get update
        APT_UPDATED=1
    fi
    local ver
    ver="$(apt-cache showsrc timescaledb 2>/dev/null | awk '/^Version:/ {print $2}' | sort -V | tail -n 1)"
    [[ -n "$ver" ]] || die "no timescaledb source package found (after adding $TRIXIE_SRC_LIST)"
    local work="$BUILD/timescaledb_$ver"
    local src
    src="$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'timescaledb-*' 2>/dev/null | head -n 1 || true)"
    if [[ -z "$src" ]]; then
        rm -rf "$work"
        mkdir -p "$work"
        (cd "$work" && logged tsdb-build apt-get source -q "timescaledb=$ver")
        src="$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'timescaledb-*' | head -n 1)"
        [[ -n "$src" ]] || die "apt-get source timescaledb=$ver gave no source folder in $work"
    fi
    local flags=(
        -DCMAKE_BUILD_TYPE=RelWithDebInfo
        -DPG_CONFIG="$PG_CONFIG"
        -DAPACHE_ONLY=ON            # Debian's +dfsg source has no tsl/ folder
        -DREGRESS_CHECKS=OFF
        -DTAP_CHECKS=OFF
        -DWARNINGS_AS_ERRORS=OFF
        -DUSE_TELEMETRY=OFF          # as Debian's package: no telemetry code at all
        -DSEND_TELEMETRY_DEFAULT=OFF
        -DUSE_OPENSSL=OFF            # only used by telemetry
    )
    local t0=$SECONDS
    rm -rf "$src/build-pg$PGMAJOR"
    logged tsdb-build cmake -S "$src" -B "$src/build-pg$PGMAJOR" "${flags[@]}"
    logged tsdb-build make -C "$src/build-pg$PGMAJOR" -j"$(nproc)"
    logged tsdb-build as_root make -C "$src/build-pg$PGMAJOR" install
    TSDB_BUILD_SECONDS=$((SECONDS - t0))
    printf 'version=%s\nsource=%s\npg_config=%s\nbuild_seconds=%s\nflags=%s\n' \
        "$ver" "$src" "$PG_CONFIG" "$TSDB_BUILD_SECONDS" "${flags[*]}" >"$STAMPS/timescaledb-pg$PGMAJOR.built"
    TSDB_HOW="built from Debian source $ver in ${TSDB_BUILD_SECONDS}s (make -j$(nproc))"
}

tsdb_present() {
    [[ -f "$PG_EXTDIR/timescaledb.control" ]] && compgen -G "$PG_LIBDIR/timescaledb*.so" >/dev/null
}
tsdb_version() { sed -n "s/^default_version *= *'\(.*\)'.*/\1/p" "$PG_EXTDIR/timescaledb.control" 2>/dev/null; }

TSDB_HOW=""
if tsdb_present; then
    TSDB_HOW="skip: $(tsdb_version) already installed for PostgreSQL $PGMAJOR"
else
    apt_update_once
    for pkg in "postgresql-$PGMAJOR-timescaledb" "timescaledb-2-postgresql-$PGMAJOR"; do
        if [[ -n "$(apt_candidate "$pkg")" ]]; then
            logged apt apt_get install --no-install-recommends "$pkg"
            TSDB_HOW="installed package $pkg"
            break
        fi
    done
    if [[ -z "$TSDB_HOW" ]]; then
        build_timescaledb_from_source
    fi
    tsdb_present || die "TimescaleDB still missing from $PG_EXTDIR after install"
fi
say timescaledb "$TSDB_HOW"

VERIFY_STAMP="$STAMPS/timescaledb-pg$PGMAJOR-$(tsdb_version).verified"
if [[ -f "$VERIFY_STAMP" ]]; then
    say tsdb-check "skip: verified $(cat "$VERIFY_STAMP")"
else
    verify_timescaledb
    printf '%s\n' "$TSDB_CHECK" >"$VERIFY_STAMP"
    say tsdb-check "ok in a throwaway cluster: $TSDB_CHECK"
fi

# ---------------------------------------------------------------- 6. Python venv
venv_notes=()
if ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    logged venv "$PYTHON" -m venv "$VENV"
    rm -f "$STAMPS/pip-install"
    venv_notes+=("created $VENV with $("$VENV/bin/python" -V 2>&1)")
fi
if [[ ! -f "$STAMPS/pip-install" || "$ROOT/pyproject.toml" -nt "$STAMPS/pip-install" ]]; then
    logged venv "$VENV/bin/python" -m pip install -q -e "${ROOT}[dev]"
    touch "$STAMPS/pip-install"
    venv_notes+=("pip install -e '.[dev]' done")
fi
if ((${#venv_notes[@]})); then
    say venv "$(IFS=';'; echo "${venv_notes[*]}")"
else
    say venv "skip: $VENV up to date with pyproject.toml"
fi

# ---------------------------------------------------------------- 7. browser tests
# tests/integration/test_docs_offline.py drives Debian's Chromium with playwright-core (pinned in tests/browser/);
# no browser is ever downloaded. The docs pages' own assets are committed (api/static/docs/): no Node.js needed to run.
BROWSER_TESTS="$ROOT/tests/browser"
install_pkgs chromium chromium
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    install_pkgs nodejs nodejs npm
fi
if [[ ! -d "$BROWSER_TESTS/node_modules/playwright-core" \
    || "$BROWSER_TESTS/package-lock.json" -nt "$BROWSER_TESTS/node_modules/.package-lock.json" ]]; then
    (cd "$BROWSER_TESTS" && logged npm npm ci --ignore-scripts --no-audit --no-fund)
    say npm "npm ci in tests/browser: playwright-core $(cd "$BROWSER_TESTS" && node -p 'require("playwright-core/package.json").version')"
else
    say npm "skip: tests/browser/node_modules up to date with its lockfile"
fi

# ---------------------------------------------------------------- 8. versions
mosq_v="$(mosquitto -h 2>&1 || true)"
mosq_v="$(sed -n 's/^mosquitto version \([^ ]*\).*/\1/p' <<<"$mosq_v" | head -n 1)"
say versions "mosquitto ${mosq_v:-?}; $("$PGBIN/postgres" --version); timescaledb $(tsdb_version) ($PG_EXTDIR)"
say "done" "in $((SECONDS - T0))s; private clusters run as '$IOC_USER' when ioc runs as root"
