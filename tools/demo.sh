#!/usr/bin/env bash
# tools/demo.sh: the documented entry point, kept where it always was; the
# script itself is tools/scripts/demo.sh (README.md, "Layout").
exec "$(dirname "${BASH_SOURCE[0]}")/scripts/demo.sh" "$@"
