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
@description('Kind of principal in principalId (a CI pipeline deploys as ServicePrincipal).')
param principalType string = 'User'

@minLength(1)
@description('Client id of the multi-tenant Entra app registration that App Service Authentication accepts tokens and sign-ins for (the portal requests tokens for api://<this id>).')
param authClientId string

@description('OpenID issuer for App Service Authentication. Empty means multi-tenant (users of any Entra tenant); the app isolates tenants by the tid claim.')
param authOpenIdIssuer string = ''

@allowed([
  'Return401'
  'RedirectToLoginPage'
])
@description('What App Service Authentication does with an unauthenticated request: Return401 suits an API called by the portal with bearer tokens.')
param authUnauthenticatedAction string = 'Return401'

@minLength(1)
@description('Portal front-end URL (PORTAL_URL): where the OAuth callback sends the admin back to; its origin is the only CORS origin allowed.')
param portalUrl string

@description('Client id of the multi-tenant Entra app registration used to read Secure Score from Microsoft Graph (GRAPH_CLIENT_ID).')
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

@description('Entra authority host (ENTRA_AUTHORITY_HOST); change only for a national cloud.')
param entraAuthorityHost string = 'https://login.microsoftonline.com'

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

@minValue(1)
@maxValue(1000)
@description('Upper bound on Flex Consumption scale-out.')
param maximumInstanceCount int = 100

@minValue(30)
@maxValue(730)
@description('Log Analytics retention in days (the first 31 days are included in the ingestion price).')
param logRetentionInDays int = 30

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
    authOpenIdIssuer: authOpenIdIssuer
    authUnauthenticatedAction: authUnauthenticatedAction
    portalUrl: portalUrl
    graphClientId: graphClientId
    servicenowUrlTemplate: servicenowUrlTemplate
    graphBaseUrl: graphBaseUrl
    entraAuthorityHost: entraAuthorityHost
    syncSchedule: syncSchedule
    remediationGraceDays: remediationGraceDays
    pythonVersion: pythonVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
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
