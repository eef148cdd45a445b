# Shared by scripts/setup and scripts/test: one build directory outside the
# clone (so every clone and CI reuse one build of lancedb + candle) and the
# system packages the build and the tests need.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ask/target}"

# Installs Debian packages whose command is missing: `need_pkg CMD PACKAGE`.
need_pkg() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "setup: installing $2 (for $1)" >&2
    install_pkg "$2"
}

# Installs a Debian package: `install_pkg PACKAGE`.
install_pkg() {
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    if [ -z "${ASK_APT_UPDATED:-}" ]; then
        echo "setup: apt-get update" >&2
        $sudo apt-get update -qq
        export ASK_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$1" >/dev/null
}

# Says how to put a folder on PATH when it is not there: `path_advice DIR`
# prints nothing when DIR is on $PATH, else the line to add to the startup
# file of the user's shell ($SHELL: bash, zsh or fish), on standard error.
path_advice() {
    case ":$PATH:" in *":$1:"*) return 0 ;; esac
    local dir="$1" rc line
    case "$dir" in "$HOME"/*) dir="\$HOME/${dir#"$HOME"/}" ;; esac
    case "$(basename "${SHELL:-/bin/bash}")" in
        zsh) rc="~/.zshrc" line="export PATH=\"$dir:\$PATH\"" ;;
        fish) rc="~/.config/fish/config.fish" line="fish_add_path $dir" ;;
        *) rc="~/.bashrc" line="export PATH=\"$dir:\$PATH\"" ;;
    esac
    echo "setup: $1 is not on your PATH, so your shell will not find ask there yet. Add it with:" >&2
    echo "    echo '$line' >> $rc" >&2
    echo "then open a new terminal." >&2
}
