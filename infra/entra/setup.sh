#!/usr/bin/env bash
# Create or update the connector's Entra app registration with the Azure CLI (run it again at any
# time: it converges on the same registration). The registration's body comes from manifest.py:
# app roles with stable ids, the portal's scope, the `wids` claim, the Graph permissions.
# docs/operations.md, "Entra app registration", says what it does and what to do after it.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: infra/entra/setup.sh [options]

  --display-name NAME       registration to create or update (default: ServiceNow ticketing connector)
  --app-id ID               update this registration (client id) instead of finding it by name
  --app-host HOST           function app host (azd env get-value AZURE_FUNCTION_APP_HOST): adds the
                            Easy Auth sign-in redirect https://HOST/.auth/login/aad/callback
  --write-back              also request SecurityEvents.ReadWrite.All (Secure Score write-back)
  --customer-tenant TENANT  print the admin-consent link for this customer tenant (id or domain)
  --dry-run                 print every command and the body it would send; call nothing
  -h, --help                this text
EOF
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
display_name="ServiceNow ticketing connector"
app_id=""
app_host=""
write_back=""
customer_tenant="<customer tenant id>"
dry_run=""
graph="${GRAPH_URL:-https://graph.microsoft.com}"
login="${LOGIN_URL:-https://login.microsoftonline.com}"

while [ $# -gt 0 ]; do
  case "$1" in
    --display-name) display_name="$2"; shift 2 ;;
    --app-id) app_id="$2"; shift 2 ;;
    --app-host) app_host="$2"; shift 2 ;;
    --write-back) write_back="--write-back"; shift ;;
    --customer-tenant) customer_tenant="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

# Print a command, then run it unless this is a dry run: a dry run never calls az at all.
show() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
}
run() {
  show "$@"
  if [ -z "$dry_run" ]; then "$@"; fi
}
# The same for a command whose output is needed: a dry run goes on with the placeholder ($1).
capture() {
  local placeholder="$1"; shift
  show "$@" >&2
  if [ -n "$dry_run" ]; then echo "$placeholder"; else "$@"; fi
}

python="$(command -v python3 || command -v python)"
if [ -z "$dry_run" ] && ! command -v az >/dev/null; then
  echo "setup.sh: the Azure CLI (az) is required; run az login first" >&2
  exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# 1. The registration: the one named, or the one with this display name, or a new one.
if [ -z "$app_id" ]; then
  found="$(capture "" az ad app list --display-name "$display_name" --query "[].appId" -o tsv)"
  count="$(printf '%s' "$found" | grep -c . || true)"
  if [ "$count" -gt 1 ]; then
    echo "setup.sh: $count registrations are named '$display_name'; pass --app-id" >&2
    exit 1
  elif [ "$count" -eq 1 ]; then
    app_id="$found"
  else
    app_id="$(capture "<new appId>" az ad app create --display-name "$display_name" \
      --sign-in-audience AzureADMultipleOrgs --query appId -o tsv)"
    [ -n "$dry_run" ] || echo "Created the app registration $app_id" >&2
  fi
fi
# A registration just created can take a few seconds to be readable.
for attempt in 1 2 3 4 5 6; do
  if object_id="$(capture "<objectId>" az ad app show --id "$app_id" --query id -o tsv)"; then break; fi
  [ "$attempt" -lt 6 ] || exit 1
  sleep 5
done

# 2. The body: roles, scope, claims, Graph permissions, keeping ids the registration already has.
if [ -n "$dry_run" ]; then
  echo '{}' >"$work/current.json"
else
  az ad app show --id "$app_id" -o json >"$work/current.json"
fi
options=(--app-id "$app_id" --current "$work/current.json")
if [ -n "$write_back" ]; then options+=(--write-back); fi
if [ -n "$app_host" ]; then options+=(--app-host "$app_host"); fi
"$python" "$here/manifest.py" application "${options[@]}" >"$work/application.json"
echo "Body of the PATCH (infra/entra/manifest.py):"
cat "$work/application.json"
run az rest --method PATCH --uri "$graph/v1.0/applications/$object_id" \
  --headers "Content-Type=application/json" --body "@$work/application.json"

# 3. Its service principal in this tenant (the operator's), so roles can be assigned here too.
if [ -n "$dry_run" ]; then
  echo "+ az ad sp show --id $app_id --query id -o tsv   (and when it finds none:)"
  run az ad sp create --id "$app_id"
elif ! az ad sp show --id "$app_id" --query id -o tsv >/dev/null 2>&1; then
  run az ad sp create --id "$app_id"
fi

# 4. What comes next, in each customer tenant and in the deployment.
roles="$("$python" "$here/manifest.py" role-ids --app-id "$app_id" --current "$work/current.json")"
cat <<EOF

Done: app registration $app_id (api://$app_id, scope user_impersonation).

Deployment (the same registration serves Easy Auth and Microsoft Graph):
  azd env set AUTH_CLIENT_ID $app_id
  azd env set GRAPH_CLIENT_ID $app_id
  az keyvault secret set --vault-name "\$(azd env get-value AZURE_KEY_VAULT_NAME)" --name graph-client-secret \\
    --value "\$(az ad app credential reset --id $app_id --append --display-name graph --years 1 --query password -o tsv)"
    (after the first azd up; the new client secret goes straight into Key Vault, never to a file or screen)

Each customer tenant: a Global or Privileged Role Administrator of that tenant opens
  $login/$customer_tenant/adminconsent?client_id=$app_id
and then assigns the roles there (Entra admin center > Enterprise applications > the app >
Users and groups > Add user/group), or with the CLI, signed in to that tenant:
  sp=\$(az ad sp show --id $app_id --query id -o tsv)
  az rest --method POST --uri "$graph/v1.0/servicePrincipals/\$sp/appRoleAssignedTo" \\
    --body '{"principalId":"<user or group object id>","resourceId":"'\$sp'","appRoleId":"<role id>"}'
Role ids:
$(printf '%s\n' "$roles" | sed 's/^/  /')
Security Administrators of a tenant count as Connector.Admin without an assignment (the wids claim).
Connector.Operator: assign it only in the operator's own tenant, and set OPERATOR_TENANT_ID to it.
EOF
