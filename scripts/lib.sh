# Shared by scripts/*.sh: make sure the system packages a step needs are installed.
#
#   need PKG CMD    queue apt package PKG unless command CMD exists; PKG may list alternatives
#                   as "a|b" (the first one apt knows is installed)
#   need_python MOD PKG  queue apt package PKG unless the system python (/usr/bin/python3)
#                   can import module MOD
#   install_needed  install everything queued: as root with apt-get, otherwise print the
#                   apt-get line to run and exit 1
#
# Sourced, not executed: the caller has `set -euo pipefail`.

_needed=()

# Daemons live in /usr/sbin, which is not on every user's PATH.
_have() {
    command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" || -x "/sbin/$1" ]]
}

need_python() {
    local module=$1 pkg=$2
    /usr/bin/python3 -c "import $module" >/dev/null 2>&1 || _needed+=("$pkg")
}

need() {
    local pkg=$1 cmd=$2
    _have "$cmd" || _needed+=("$pkg")
}

# The first of "a|b|c" that apt has a candidate for.
_pick() {
    local alt policy
    IFS='|' read -ra alts <<<"$1"
    for alt in "${alts[@]}"; do
        # Captured first: `apt-cache | grep -q` would trip pipefail when grep exits early.
        policy=$(apt-cache policy "$alt" 2>/dev/null || true)
        if [[ $policy == *"Candidate: "[0-9]* ]]; then
            echo "$alt"
            return
        fi
    done
    echo "${alts[0]}"
}

install_needed() {
    ((${#_needed[@]})) || return 0
    if [[ $(id -u) -ne 0 ]]; then
        local first=() p
        for p in "${_needed[@]}"; do first+=("${p%%|*}"); done
        echo "missing system packages (${_needed[*]}); as root, run:" >&2
        echo "  apt-get update && apt-get install -y ${first[*]}" >&2
        echo "then run this again." >&2
        exit 1
    fi
    apt-get update -qq
    local pkgs=() p
    for p in "${_needed[@]}"; do pkgs+=("$(_pick "$p")"); done
    echo "==> apt-get install ${pkgs[*]}"
    # Packaged daemons (nginx, haproxy) must not start on install: the tests start their own,
    # on loopback only. policy-rc.d is Debian's switch for that; leave an existing one alone.
    local policy=/usr/sbin/policy-rc.d created=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
    if [[ -n $created ]]; then rm -f "$policy"; fi
    _needed=()
}
