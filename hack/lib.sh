# Helpers shared by the hack/ scripts (sourced, not run).

# A loopback port that was free a moment ago.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# alive PIDFILE: whether the process in PIDFILE exists and is not a zombie
# (an exited child whose parent is gone may linger unreaped where PID 1
# does not reap).
alive() {
    [[ -f "$1" ]] || return 1
    local pid
    pid="$(cat "$1")"
    kill -0 "$pid" 2>/dev/null || return 1
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]]
}

# start_reaper OWNER_PID SCRIPT NAME: runs `SCRIPT down --name NAME` once
# OWNER_PID has exited (a test binary's server stops with it).
start_reaper() {
    setsid bash -c '
        while kill -0 "$1" 2>/dev/null; do sleep 1; done
        "$2" down --name "$3" >/dev/null 2>&1
    ' reaper "$1" "$2" "$3" >/dev/null 2>&1 </dev/null &
}

# apt_install PKG...: Debian packages, through sudo when not root.
apt_install() {
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}

# k8s_wrapper_gomod MODULE K8S_VERSION: prints a go.mod for a wrapper module
# that builds k8s.io/kubernetes commands. `go install` refuses
# k8s.io/kubernetes (its go.mod replaces the staging modules with local
# paths), so every `k8s.io/x => ./staging/src/k8s.io/x` of the release's own
# go.mod becomes `k8s.io/x => k8s.io/x v0.Y.Z` here.
k8s_wrapper_gomod() {
    local module="$1" version="$2" gomod
    # From outside any module: the caller may be writing this into ./go.mod.
    gomod="$(cd / && go mod download -json "k8s.io/kubernetes@v$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    echo "module $module"
    echo
    echo "go 1.24.0"
    echo
    echo "replace ("
    grep -E '^\s*k8s\.io/[^ ]+ => \./staging/' "$gomod" \
        | awk -v v="v0.${version#1.}" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
}
