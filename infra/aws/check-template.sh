#!/usr/bin/env bash
# Lints and scans the packaged CloudFormation templates with cfn-lint and checkov (pinned, in a virtualenv
# under the lab's cache): the default one (`npm run package` writes it to .serverless/) and one per
# deployment variant in infra/aws/variants.json, each packaged here offline. Exits non-zero on any finding.
# Suppressions live next to the resources they concern (Metadata.checkov.skip, .cfnlintrc.yaml), each
# with its reason.
set -euo pipefail
cd "$(dirname "$0")/../.."
default=.serverless/cloudformation-template-update-stack.json
[ -f "$default" ] || { echo "no $default: run npm run package first" >&2; exit 2; }
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
echo "checkov $("$venv/bin/checkov" --version)"
packaged="$(mktemp -d)"
trap 'rm -rf "$packaged"' EXIT
# Packaging a variant clears .serverless/ (osls cleans it whatever --package says): keep the default
# template aside first; run `npm run package` again afterwards for its zips.
cp "$default" "$packaged/default.json"
for variant in $(node -e 'console.log(Object.keys(require("./infra/aws/variants.json")).filter((k) => !k.startsWith("_")).join(" "))'); do
  if [ "$variant" = default ]; then
    template="$packaged/default.json"
  else
    mapfile -t params < <(node -e 'for (const p of require("./infra/aws/variants.json")[process.argv[1]]) console.log(`--param=${p}`)' "$variant")
    env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_PROFILE \
      npx sls package --package "$packaged/$variant" "${params[@]}" > "$packaged/$variant.log" 2>&1 \
      || { cat "$packaged/$variant.log" >&2; echo "sls package failed for variant $variant" >&2; exit 1; }
    template="$packaged/$variant/cloudformation-template-update-stack.json"
  fi
  echo "== $variant"
  "$venv/bin/cfn-lint" "$template"
  "$venv/bin/checkov" --file "$template" --framework cloudformation --quiet --compact --skip-download
done
