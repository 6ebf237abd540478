// The operations workbook (docs/operations.md, "What to watch"): the connector's metrics and
// failures on one page, over the Application Insights resource.
param location string
param tags object = {}
param applicationInsightsId string

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(applicationInsightsId, 'servicenow-connector-operations')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'ServiceNow connector: operations'
    category: 'workbook'
    sourceId: applicationInsightsId
    serializedData: loadTextContent('workbook/operations.workbook.json')
  }
}

output id string = workbook.id
