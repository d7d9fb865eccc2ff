/**
 * CloudWatch Embedded Metric Format: a metric is a structured log line that CloudWatch turns into a
 * metric, so a Lambda function publishes metrics without an API call.
 */
export type MetricUnit = 'Count' | 'Seconds' | 'Milliseconds' | 'Bytes' | 'Count/Second';

export function emfLine(
  namespace: string,
  dimensions: Record<string, string>,
  metrics: Record<string, { value: number; unit: MetricUnit }>,
  timestamp = Date.now(),
): string {
  return JSON.stringify({
    _aws: {
      Timestamp: timestamp,
      CloudWatchMetrics: [
        {
          Namespace: namespace,
          Dimensions: [Object.keys(dimensions)],
          Metrics: Object.entries(metrics).map(([Name, m]) => ({ Name, Unit: m.unit })),
        },
      ],
    },
    ...dimensions,
    ...Object.fromEntries(Object.entries(metrics).map(([name, m]) => [name, m.value])),
  });
}

export function emitMetrics(
  namespace: string,
  dimensions: Record<string, string>,
  metrics: Record<string, { value: number; unit: MetricUnit }>,
  write: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
): void {
  write(emfLine(namespace, dimensions, metrics));
}
