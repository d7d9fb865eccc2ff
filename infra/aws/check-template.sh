#!/usr/bin/env bash
# Lints and scans the packaged CloudFormation template with cfn-lint and checkov (pinned, in a virtualenv
# under the lab's cache). Run after `npm run package`; exits non-zero on any finding. Suppressions live
# next to the resources they concern (Metadata.checkov.skip, .cfnlintrc.yaml), each with its reason.
set -euo pipefail
cd "$(dirname "$0")/../.."
template=.serverless/cloudformation-template-update-stack.json
[ -f "$template" ] || { echo "no $template: run npm run package first" >&2; exit 2; }
venv="${KDR_LAB_CACHE_DIR:-.lab/cache}/template-checks-venv"
requirements=infra/aws/template-checks-requirements.txt
stamp="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ "$(cat "$venv/.complete" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r "$requirements"
  echo "$stamp" > "$venv/.complete"
fi
echo "cfn-lint $("$venv/bin/cfn-lint" --version)"
"$venv/bin/cfn-lint" "$template"
echo "checkov $("$venv/bin/checkov" --version)"
"$venv/bin/checkov" --file "$template" --framework cloudformation --quiet --compact
