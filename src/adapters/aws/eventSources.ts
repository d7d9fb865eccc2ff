import {
  type LambdaClient,
  ListEventSourceMappingsCommand,
  UpdateEventSourceMappingCommand,
} from '@aws-sdk/client-lambda';
import { StoreError } from '../../errors.ts';

/**
 * The mirror function's event source mappings: failover disables them (the mirror's guard already
 * refuses to write; this stops the invocations), failback enables them again.
 */
export class EventSourceSwitch {
  constructor(
    private readonly client: LambdaClient,
    private readonly functionName: string,
  ) {}

  async set(enabled: boolean): Promise<string[]> {
    try {
      const changed: string[] = [];
      let marker: string | undefined;
      do {
        const page = await this.client.send(
          new ListEventSourceMappingsCommand({
            FunctionName: this.functionName,
            ...(marker ? { Marker: marker } : {}),
          }),
        );
        for (const mapping of page.EventSourceMappings ?? []) {
          await this.client.send(
            new UpdateEventSourceMappingCommand({ UUID: mapping.UUID!, Enabled: enabled }),
          );
          changed.push(
            `${enabled ? 'enabled' : 'disabled'} event source mapping ${mapping.UUID} (${mapping.Topics?.join(',') ?? ''})`,
          );
        }
        marker = page.NextMarker;
      } while (marker);
      return changed;
    } catch (error) {
      throw new StoreError(
        'STORE_UNAVAILABLE',
        `could not ${enabled ? 'enable' : 'disable'} the event sources of ${this.functionName}`,
        {
          cause: error,
        },
      );
    }
  }
}
