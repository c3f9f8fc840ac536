#!/usr/bin/env bash
# Parse "--name value" / "--name=value" command-line options into existing shell variables.
# Source it after defining the defaults:   . utils/parse_options.sh
# Only variables that already exist can be set (a typo is an error, not a silent new
# variable); "--help" prints the variables and their current values ($help_message first).
# Dashes in option names map to underscores (--stop-stage == --stop_stage).

__plo_print_help() {
    [ -n "${help_message:-}" ] && echo -e "${help_message}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            __plo_print_help
            exit 0 ;;
        --*=*)
            __plo_name="${1%%=*}"; __plo_value="${1#*=}"; shift ;;
        --*)
            __plo_name="$1"
            if [ $# -lt 2 ]; then
                echo "$0: option $1 needs a value" >&2; exit 1
            fi
            __plo_value="$2"; shift 2 ;;
        *)
            break ;;
    esac
    __plo_name="${__plo_name#--}"
    __plo_name="${__plo_name//-/_}"
    if ! [[ "${__plo_name}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
        echo "$0: invalid option name --${__plo_name}" >&2; exit 1
    fi
    if [ -z "${!__plo_name+set}" ]; then
        echo "$0: unknown option --${__plo_name} (run $0 --help for the options)" >&2
        exit 1
    fi
    printf -v "${__plo_name}" '%s' "${__plo_value}"
done
unset __plo_name __plo_value
true
