// One log search alert over Application Insights: a KQL query that yields one number (per
// dimension, when the query summarizes `by` one), compared with a threshold on every evaluation.
param name string
param location string
param tags object = {}
param displayName string
param alertDescription string
@minValue(0)
@maxValue(4)
param severity int
param applicationInsightsId string
param query string
@description('Column of the query result the threshold applies to.')
param measureColumn string
@allowed([
  'Total'
  'Maximum'
  'Minimum'
  'Average'
])
param timeAggregation string = 'Total'
@allowed([
  'GreaterThan'
  'LessThan'
])
param operator string = 'GreaterThan'
param threshold int
@description('Column the alert is split by (one alert per value), or empty.')
param dimension string = ''
param evaluationFrequency string = 'PT5M'
param windowSize string = 'PT15M'
param actionGroupIds array

resource rule 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: name
  location: location
  tags: tags
  properties: {
    displayName: displayName
    description: alertDescription
    severity: severity
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: evaluationFrequency
    windowSize: windowSize
    criteria: {
      allOf: [
        {
          query: query
          timeAggregation: timeAggregation
          metricMeasureColumn: measureColumn
          dimensions: empty(dimension) ? [] : [
            {
              name: dimension
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: operator
          threshold: threshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

output id string = rule.id
