# Environment for recipe jobs. Recipes symlink or copy this file.
# Uses the project's virtual environment when it exists (make demo / make test create it),
# otherwise whatever python3 has espnet_llm_plugin installed.
MAIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "${MAIN_ROOT}/.venv/bin/activate" ]; then
    # shellcheck disable=SC1091
    . "${MAIN_ROOT}/.venv/bin/activate"
fi
export PYTHONIOENCODING=UTF-8
export LC_ALL=C.UTF-8
export PYTHONDONTWRITEBYTECODE=1
