// The connector's alerts (docs/operations.md says what each means and what to do) and the action
// group they notify. Every rule is a log search over Application Insights: the queries in alerts/
// read the host's traces and requests and the app's OpenTelemetry metrics (customMetrics).
param namePrefix string
param location string
param tags object = {}
param applicationInsightsId string

@description('Email address the alerts go to; empty: no email (the alerts still fire and show in Azure Monitor).')
param alertEmail string = ''

@description('Resource id of an existing action group to notify as well (e.g. an on-call rotation); empty: none.')
param existingActionGroupId string = ''

@description('Percentage of ServiceNow calls answered 5xx or not at all, over 15 minutes, above which the alert fires.')
param servicenow5xxPercent int = 10

@description('Percentage of ServiceNow answers that are 429, over 15 minutes, above which the alert fires.')
param servicenow429Percent int = 20

@description('Failed invocations of one function in 15 minutes above which the alert fires.')
param functionFailureCount int = 5

@description('Window without a single sync timer run after which the alert fires; keep it several times SYNC_SCHEDULE.')
param timerSilenceWindow string = 'PT30M'

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${namePrefix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'snowconn'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actionGroupIds = empty(existingActionGroupId) ? [
  actionGroup.id
] : [
  actionGroup.id
  existingActionGroupId
]

module poisonMessages 'alerts/log-alert.bicep' = {
  name: 'alert-poison-messages'
  params: {
    name: 'alert-${namePrefix}-poison-messages'
    location: location
    tags: tags
    displayName: 'Connector: messages moved to a poison queue'
    alertDescription: 'The host gave up on a queue message after 5 attempts (sync-requests-poison: a tenant sync; ticket-creates-poison: a ticket creation). See docs/operations.md.'
    severity: 1
    applicationInsightsId: applicationInsightsId
    query: loadTextContent('alerts/poison-messages.kql')
    measureColumn: 'poisoned'
    dimension: 'queue'
    threshold: 0
    actionGroupIds: actionGroupIds
  }
}

module reauthorizationStuck 'alerts/log-alert.bicep' = {
  name: 'alert-reauthorization-stuck'
  params: {
    name: 'alert-${namePrefix}-reauthorization-stuck'
    location: location
    tags: tags
    displayName: 'Connector: connections waiting a day for re-authorization'
    alertDescription: 'A tenant has been in reauthorization_required for a day (one alert per tenant): its tickets no longer sync until one of its admins re-authorizes. See docs/operations.md.'
    severity: 2
    applicationInsightsId: applicationInsightsId
    query: loadTextContent('alerts/reauthorization-stuck.kql')
    measureColumn: 'stuck'
    dimension: 'tenant'
    threshold: 0
    evaluationFrequency: 'PT1H'
    windowSize: 'P2D'
    actionGroupIds: actionGroupIds
  }
}

module syncFailing 'alerts/log-alert.bicep' = {
  name: 'alert-sync-failing'
  params: {
    name: 'alert-${namePrefix}-sync-failing'
    location: location
    tags: tags
    displayName: 'Connector: a tenant\'s sync has failed for a day'
    alertDescription: 'A tenant\'s syncs have failed for about a day without one success (one alert per tenant): its ticket states are stale. See docs/operations.md.'
    severity: 2
    applicationInsightsId: applicationInsightsId
    query: loadTextContent('alerts/sync-failing.kql')
    measureColumn: 'failing'
    dimension: 'tenant'
    threshold: 0
    evaluationFrequency: 'PT1H'
    windowSize: 'P1D'
    actionGroupIds: actionGroupIds
  }
}

module syncTimerSilent 'alerts/log-alert.bicep' = {
  name: 'alert-sync-timer-silent'
  params: {
    name: 'alert-${namePrefix}-sync-timer-silent'
    location: location
    tags: tags
    displayName: 'Connector: the sync timer has stopped'
    alertDescription: 'No sync timer run was logged in the window: no tenant is being synced. See docs/operations.md.'
    severity: 1
    applicationInsightsId: applicationInsightsId
    query: loadTextContent('alerts/sync-timer-silent.kql')
    measureColumn: 'runs'
    operator: 'LessThan'
    threshold: 1
    evaluationFrequency: 'PT15M'
    windowSize: timerSilenceWindow
    actionGroupIds: actionGroupIds
  }
}

module servicenow5xx 'alerts/log-alert.bicep' = {
  name: 'alert-servicenow-5xx'
  params: {
    name: 'alert-${namePrefix}-servicenow-5xx'
    location: location
    tags: tags
    displayName: 'Connector: ServiceNow failing (5xx or no answer)'
    alertDescription: 'Too many ServiceNow calls got a 5xx or no answer at all in 15 minutes: instances are failing or unreachable. See docs/operations.md.'
    severity: 2
    applicationInsightsId: applicationInsightsId
    query: loadTextContent('alerts/servicenow-5xx.kql')
    measureColumn: 'rate_pct'
    timeAggregation: 'Maximum'
    threshold: servicenow5xxPercent
    actionGroupIds: actionGroupIds
  }
}

module servicenow429 'alerts/log-alert.bicep' = {
  name: 'alert-servicenow-429'
  params: {
    name: 'alert-${namePrefix}-servicenow-429'
    location: location
    tags: tags
    displayName: 'Connector: ServiceNow rate-limits the connector'
    alertDescription: 'Too many ServiceNow answers were 429 in 15 minutes: the connector is being throttled and syncs are deferred. See docs/operations.md.'
    severity: 3
    applicationInsightsId: applicationInsightsId
    query: loadTextContent('alerts/servicenow-429.kql')
    measureColumn: 'rate_pct'
    timeAggregation: 'Maximum'
    threshold: servicenow429Percent
    actionGroupIds: actionGroupIds
  }
}

module functionFailures 'alerts/log-alert.bicep' = {
  name: 'alert-function-failures'
  params: {
    name: 'alert-${namePrefix}-function-failures'
    location: location
    tags: tags
    displayName: 'Connector: function invocations failing'
    alertDescription: 'A function failed (unhandled exception or HTTP 5xx) more often than the threshold in 15 minutes. See docs/operations.md.'
    severity: 2
    applicationInsightsId: applicationInsightsId
    query: loadTextContent('alerts/function-failures.kql')
    measureColumn: 'failures'
    dimension: 'operation_Name'
    threshold: functionFailureCount
    actionGroupIds: actionGroupIds
  }
}

output actionGroupId string = actionGroup.id
