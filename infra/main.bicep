// Entry point for `azd up`: one resource group holding the ServiceNow ticketing connector.
// Raw resource declarations only (no br/public registry modules). See infra/README.md.
targetScope = 'subscription'

@minLength(1)
@maxLength(48)
@description('Name of the azd environment (AZURE_ENV_NAME). Names the resource group and seeds unique resource names.')
param environmentName string

@minLength(1)
@description('Azure region for every resource (AZURE_LOCATION). It must offer Flex Consumption (FC1).')
param location string

@description('Object id of whoever runs azd (AZURE_PRINCIPAL_ID). Gets Key Vault Secrets Officer on the vault so they can store the Graph client secret. Empty: no grant.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
@description('Kind of principal in principalId (AZURE_PRINCIPAL_TYPE, set by azd: a CI pipeline deploys as ServicePrincipal).')
param principalType string = 'User'

@minLength(1)
@description('Client id of the multi-tenant Entra app registration that App Service Authentication accepts tokens and sign-ins for (the portal requests tokens for api://<this id>).')
param authClientId string

@description('Client id of the external portal\'s own app registration (PORTAL_CLIENT_ID), if it has one: Easy Auth accepts tokens obtained by that client or by the API registration itself, no other.')
param portalClientId string = ''

@description('OpenID issuer for App Service Authentication (AUTH_OPENID_ISSUER). Empty means multi-tenant (users of any Entra tenant); the app isolates tenants by the tid claim.')
param authOpenIdIssuer string = ''

@allowed([
  'Return401'
  'RedirectToLoginPage'
])
@description('What App Service Authentication does with an unauthenticated request (AUTH_UNAUTHENTICATED_ACTION): Return401 suits an API called by the portal with bearer tokens.')
param authUnauthenticatedAction string = 'Return401'

@minLength(9)
@description('Portal front-end URL (PORTAL_URL), https://host[/path]: where the OAuth callback sends the admin back to; its origin is the only CORS origin allowed. infra/hooks/preflight.py refuses any other form before provisioning.')
param portalUrl string

@minLength(1)
@description('Client id of the multi-tenant Entra app registration used to read Secure Score from Microsoft Graph (GRAPH_CLIENT_ID). Required; `none` deploys without Microsoft Graph (no Secure Score check, no improvement actions), on purpose rather than by an unset variable.')
param graphClientId string

@secure()
@description('Client secret of the Graph app registration. Optional: when set it is stored in Key Vault; otherwise put it there yourself (see infra/README.md).')
param graphClientSecret string = ''

@description('Name of the Key Vault secret holding the Graph client secret.')
param graphClientSecretName string = 'graph-client-secret'

@description('ServiceNow instance URL template (SERVICENOW_URL_TEMPLATE); must contain {instance}.')
param servicenowUrlTemplate string = 'https://{instance}.service-now.com'

@description('Microsoft Graph base URL (GRAPH_BASE_URL); change only for a national cloud.')
param graphBaseUrl string = 'https://graph.microsoft.com'

@description('Entra authority host (ENTRA_AUTHORITY_HOST); defaults to the login endpoint of the cloud being deployed to.')
param entraAuthorityHost string = environment().authentication.loginEndpoint

@description('NCRONTAB schedule of the sync timer (SYNC_SCHEDULE), UTC.')
param syncSchedule string = '0 */5 * * * *'

@description('Days after a ticket closes before the Secure Score check flags it closedWithoutRemediation (REMEDIATION_GRACE_DAYS).')
param remediationGraceDays string = '7'

@allowed([
  '3.11'
  '3.12'
])
@description('Python version of the Functions runtime.')
param pythonVersion string = '3.11'

@allowed([
  512
  2048
  4096
])
@description('Memory per Flex Consumption instance, in MB.')
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('Upper bound on Flex Consumption scale-out (the platform accepts 40 to 1000).')
param maximumInstanceCount int = 100

@minValue(30)
@maxValue(730)
@description('Log Analytics retention in days (the first 31 days are included in the ingestion price).')
param logRetentionInDays int = 30

@description('Entra tenant id of the operator (OPERATOR_TENANT_ID): Connector.Operator is honoured only from it, for the fleet view. Empty: fleet view off.')
param operatorTenantId string = ''

@description('Deploy the alert rules and the operations workbook (infra/core/alerts.bicep, workbook.bicep).')
param alertsEnabled bool = true

@description('Email address the alerts are sent to (ALERT_EMAIL). Optional: without it the alerts still fire and show in Azure Monitor.')
param alertEmail string = ''

@description('Resource id of an existing action group to notify as well (ALERT_ACTION_GROUP_ID), e.g. an on-call rotation. Optional.')
param alertActionGroupId string = ''

var tags = {
  'azd-env-name': environmentName
}
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))

resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'core/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'core/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
  }
}

module storage 'core/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: 'app-package-${resourceToken}'
  }
}

module keyVault 'core/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    graphClientSecretName: graphClientSecretName
    graphClientSecret: graphClientSecret
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    identityPrincipalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    deployerPrincipalId: principalId
    deployerPrincipalType: principalType
  }
}

module functionApp 'app/function.bicep' = {
  name: 'function'
  scope: rg
  // The host must find its storage and Key Vault roles in place when it first starts.
  dependsOn: [
    rbac
  ]
  params: {
    name: 'func-${resourceToken}'
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    storageTableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    keyVaultUri: keyVault.outputs.uri
    graphClientSecretName: graphClientSecretName
    authClientId: authClientId
    portalClientId: portalClientId
    authOpenIdIssuer: authOpenIdIssuer
    authUnauthenticatedAction: authUnauthenticatedAction
    portalUrl: portalUrl
    graphClientId: graphClientId == 'none' ? '' : graphClientId
    servicenowUrlTemplate: servicenowUrlTemplate
    graphBaseUrl: graphBaseUrl
    entraAuthorityHost: entraAuthorityHost
    syncSchedule: syncSchedule
    remediationGraceDays: remediationGraceDays
    pythonVersion: pythonVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    operatorTenantId: operatorTenantId
  }
}

module alerts 'core/alerts.bicep' = if (alertsEnabled) {
  name: 'alerts'
  scope: rg
  params: {
    namePrefix: resourceToken
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    alertEmail: alertEmail
    existingActionGroupId: alertActionGroupId
  }
}

module workbook 'core/workbook.bicep' = if (alertsEnabled) {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_HOST string = functionApp.outputs.defaultHostName
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URL string = keyVault.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output SERVICENOW_OAUTH_CALLBACK_URL string = functionApp.outputs.oauthCallbackUrl
