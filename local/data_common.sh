# Shared by local/<corpus>/data.sh for the corpora with an official release (an4, librispeech,
# spoken_squad, slue_voxpopuli); sourced, not run. Provides log/die, the option parser, the
# recipe environment (db.sh, path.sh) and the corpus location from db.sh.
# Each data.sh defines usage() and its option defaults (including download=false) first.

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (${0##*/}) $*" >&2; }
die() { log "error: $*"; exit 1; }

# parse_options "download data_dir ..." "$@": each listed name is an option given as
# '--name value' or '--name=value' and sets the shell variable of the same name; --download
# must be true or false; -h/--help prints usage and exits.
parse_options() {
    local _names=" $1 " _opt
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            -h|--help) usage; exit 0 ;;
            --*=*)
                _opt=${1%%=*}; _opt=${_opt#--}
                [[ "$_names" == *" $_opt "* ]] || { usage; die "unknown option: $1"; }
                printf -v "$_opt" '%s' "${1#*=}"
                shift ;;
            --*)
                _opt=${1#--}
                [[ "$_names" == *" $_opt "* ]] || { usage; die "unknown option: $1"; }
                [ $# -ge 2 ] || { usage; die "$1 needs a value"; }
                printf -v "$_opt" '%s' "$2"
                shift 2 ;;
            *) usage; die "unknown option: $1" ;;
        esac
    done
    case "$download" in
        true|false) ;;
        *) die "--download must be true or false, got '$download'" ;;
    esac
}

# load_recipe_env <recipe>: source ./db.sh and ./path.sh of the recipe directory we run in.
load_recipe_env() {
    [ -f ./db.sh ] || die "./db.sh not found; run this script from the recipe directory ($1)"
    [ -f ./path.sh ] || die "./path.sh not found; run this script from the recipe directory ($1)"
    . ./db.sh
    set +u  # environment scripts often read unset variables
    . ./path.sh
    set -u
}

# corpus_location VAR "<what it holds>": keep $VAR from db.sh; without it, 'downloads' when
# --download true, else die saying what to set.
corpus_location() {
    if [ -z "${!1:-}" ]; then
        [ "$download" = true ] || \
            die "$1 is not set: set $1 in db.sh to $2, or pass --download true"
        printf -v "$1" '%s' downloads
    fi
}
