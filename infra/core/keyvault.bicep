// Key Vault for per-tenant ServiceNow credentials/tokens and the Graph client secret.
// Azure RBAC only (no access policies), soft delete and purge protection on.
param name string
param location string
param tags object = {}
param graphClientSecretName string

@secure()
@description('Optional: when non-empty it is stored as the secret graphClientSecretName.')
param graphClientSecret string = ''

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:The function app has no VNet integration on this plan, so it reaches the vault over the public endpoint; every call needs an Entra token and an RBAC data role.
  // checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109; private endpoint + VNet integration is the documented upgrade path.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource graphSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(graphClientSecret)) {
  // checkov:skip=CKV_AZURE_114:contentType is set below; checkov 3.3's Bicep parser does not read properties of a conditional (`if`) resource.
  // checkov:skip=CKV_AZURE_41:The secret mirrors an Entra app credential whose expiry is set (and rotated) on the app registration; a second expiry here would only break the app earlier.
  parent: vault
  name: graphClientSecretName
  properties: {
    value: graphClientSecret
    contentType: 'text/plain'
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
