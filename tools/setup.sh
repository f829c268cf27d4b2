#!/usr/bin/env bash
# tools/setup.sh: the documented entry point, kept where it always was; the
# script itself is tools/scripts/setup.sh (README.md, "Layout").
exec "$(dirname "${BASH_SOURCE[0]}")/scripts/setup.sh" "$@"
