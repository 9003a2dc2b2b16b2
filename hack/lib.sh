# Helpers shared by the hack/ scripts (sourced, not run).

# A loopback port that was free a moment ago.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
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
