// Flex Consumption (FC1) plan + Linux Python function app running as the user-assigned identity,
// its app settings, App Service Authentication (Entra) and disabled basic publishing credentials.
param name string
param planName string
param location string
param tags object = {}

@description('Resource id of the user-assigned managed identity.')
param identityId string
@description('Client id of the user-assigned managed identity.')
param identityClientId string

param storageBlobEndpoint string
param storageQueueEndpoint string
param storageTableEndpoint string
param deploymentContainerName string
param applicationInsightsConnectionString string
param keyVaultUri string
param graphClientSecretName string

param authClientId string
@description('Client id of the external portal\'s own app registration: Easy Auth accepts tokens it obtained besides those of the API registration itself. Empty: the API registration only.')
param portalClientId string = ''
param authOpenIdIssuer string = ''
@allowed([
  'Return401'
  'RedirectToLoginPage'
])
param authUnauthenticatedAction string = 'Return401'

param portalUrl string
param graphClientId string
param servicenowUrlTemplate string
param graphBaseUrl string
param entraAuthorityHost string
param syncSchedule string
param remediationGraceDays string
param pythonVersion string = '3.11'
param instanceMemoryMB int = 2048
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100
@description('Entra tenant whose Connector.Operator users see the fleet view (OPERATOR_TENANT_ID); empty: fleet view off.')
param operatorTenantId string = ''

// scheme://host of the portal, the only origin whose pages may call the API (CORS_ALLOWED_ORIGINS).
// infra/hooks/preflight.py refuses a PORTAL_URL without https:// before azd provisions.
var portalOrigin = '${split(portalUrl, '/')[0]}//${split(portalUrl, '/')[2]}'
// The in-app portal signs in through Easy Auth with the API registration itself; an external
// portal (PORTAL_URL) may have a registration of its own. No other client's token is accepted.
var allowedClientApplications = empty(portalClientId) ? [
  authClientId
] : [
  authClientId
  portalClientId
]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone redundancy on Flex Consumption needs always-ready instances in each zone, i.e. a standing cost; this connector tolerates a zone outage as minutes of delayed sync.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17:Callers authenticate with Entra tokens via App Service Authentication; browsers following the OAuth callback cannot present client certificates.
  // checkov:skip=CKV_AZURE_222:The API is public by design (portal users in many tenants, ServiceNow's OAuth redirect and push hooks); App Service Authentication guards everything but /api/health, /api/oauth/callback, the HMAC-signed /api/servicenow/hooks/* and the API document and docs page.
  // checkov:skip=CKV_AZURE_78:Flex Consumption rejects siteConfig.ftpsState (error 51021); FTP is off through the 'ftp' basicPublishingCredentialsPolicies resource below (tests/infra/policies.py checks it).
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero; a minimum instance count would be always-ready capacity billed around the clock.
  // checkov:skip=CKV_AZURE_213:Not needed on Flex Consumption: the platform replaces unhealthy instances itself; /api/health exists for external probes.
  // checkov:skip=CKV_AZURE_62:Function app is intentionally reachable from everywhere (multi-tenant SaaS back end).
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      // No ftpsState: Flex Consumption rejects the property (FTP is off through the 'ftp'
      // publishing-credentials policy below).
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      // No `cors` here: the app answers CORS itself from CORS_ALLOWED_ORIGINS (functions/_cors.py),
      // as it does locally. A platform list would answer preflights before the app and add its own
      // headers to every response (tests/infra/policies.py refuses one).
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// Every setting shared/settings.py reads in Azure (tests/infra/test_settings_coverage.py keeps
// this list honest). FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION must not be set on
// Flex Consumption: functionAppConfig.runtime carries them. LOCAL_DEV stays unset (false).
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_63:Targets the 'web' config (App Service HTTP logs); this is the appsettings resource. Function logs and requests go to Application Insights.
  // checkov:skip=CKV_AZURE_65:Targets the 'web' config (detailed error pages, an IIS feature); this is the appsettings resource.
  // checkov:skip=CKV_AZURE_66:Targets the 'web' config (failed request tracing, an IIS feature); this is the appsettings resource.
  // checkov:skip=CKV_AZURE_80:.NET Framework version check; this is a Python app and the appsettings resource.
  // checkov:skip=CKV_AZURE_88:Azure Files content share does not exist on Flex Consumption (the package lives in the blob deployment container).
  // checkov:skip=CKV_AZURE_222:Public network access is a site property (suppressed on the site with its reason); the appsettings resource has no such setting.
  // checkov:skip=CKV_AZURE_13:The check fails every sites/config that is not a V1 'authsettings'; authentication is configured in authsettingsV2 below (CKV_AZURE_56 passes).
  parent: site
  name: 'appsettings'
  properties: {
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
    AzureWebJobsStorage__queueServiceUri: storageQueueEndpoint
    AzureWebJobsStorage__tableServiceUri: storageTableEndpoint
    DataStorage__credential: 'managedidentity'
    DataStorage__clientId: identityClientId
    DataStorage__tableServiceUri: storageTableEndpoint
    DataStorage__queueServiceUri: storageQueueEndpoint
    AZURE_CLIENT_ID: identityClientId
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    // The worker hands each invocation the host's trace context (host.json telemetryMode
    // OpenTelemetry), so the app's spans join the host's request.
    PYTHON_ENABLE_OPENTELEMETRY: 'true'
    KEY_VAULT_URL: keyVaultUri
    SERVICENOW_URL_TEMPLATE: servicenowUrlTemplate
    OAUTH_REDIRECT_URI: 'https://${site.properties.defaultHostName}/api/oauth/callback'
    PORTAL_URL: portalUrl
    CORS_ALLOWED_ORIGINS: portalOrigin
    GRAPH_BASE_URL: graphBaseUrl
    ENTRA_AUTHORITY_HOST: entraAuthorityHost
    GRAPH_CLIENT_ID: graphClientId
    GRAPH_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${graphClientSecretName}/)'
    SYNC_SCHEDULE: syncSchedule
    REMEDIATION_GRACE_DAYS: remediationGraceDays
    OPERATOR_TENANT_ID: operatorTenantId
  }
}

// App Service Authentication: Entra sign-in required everywhere except the two anonymous routes.
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_63:Targets the 'web' config (App Service HTTP logs); this is the authsettingsV2 resource. Function logs and requests go to Application Insights.
  // checkov:skip=CKV_AZURE_65:Targets the 'web' config (detailed error pages, an IIS feature); this is the authsettingsV2 resource.
  // checkov:skip=CKV_AZURE_66:Targets the 'web' config (failed request tracing, an IIS feature); this is the authsettingsV2 resource.
  // checkov:skip=CKV_AZURE_80:.NET Framework version check; this is a Python app and the authsettingsV2 resource.
  // checkov:skip=CKV_AZURE_88:Azure Files content share does not exist on Flex Consumption (the package lives in the blob deployment container).
  // checkov:skip=CKV_AZURE_222:Public network access is a site property (suppressed on the site with its reason); the authsettingsV2 resource has no such setting.
  // checkov:skip=CKV_AZURE_13:V1 check (properties.enabled); this is authsettingsV2, where platform.enabled is true and CKV_AZURE_56 (the V2 check) passes.
  parent: site
  name: 'authsettingsV2'
  // Config writes on one site are serialised to avoid 409 conflicts.
  dependsOn: [
    appSettings
  ]
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: authUnauthenticatedAction
      redirectToProvider: 'azureactivedirectory'
      // Anonymous by design: the probe, ServiceNow's redirect, and the API document with its docs
      // page (each docs asset by name: functions/docs.py serves no other file). ServiceNow's push
      // hooks carry an HMAC signature, not an Entra token; a trailing `/*` is the one wildcard
      // Easy Auth matches, and only that prefix is opened.
      excludedPaths: [
        '/api/health'
        '/api/oauth/callback'
        '/api/openapi.json'
        '/api/docs'
        '/api/docs/swagger-ui-bundle.js'
        '/api/docs/swagger-ui.css'
        '/api/docs/docs.js'
        '/api/docs/docs.css'
        '/api/servicenow/hooks/*'
      ]
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          openIdIssuer: empty(authOpenIdIssuer) ? null : authOpenIdIssuer
        }
        validation: {
          allowedAudiences: [
            'api://${authClientId}'
            authClientId
          ]
          // Checked against the token's appid/azp: a token another application obtained for our
          // API is refused. Tenants stay open (multi-tenant); the app isolates them by tid.
          defaultAuthorizationPolicy: {
            allowedApplications: allowedClientApplications
          }
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
    httpSettings: {
      requireHttps: true
    }
  }
}

resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
output oauthCallbackUrl string = 'https://${site.properties.defaultHostName}/api/oauth/callback'
