import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  NotFound,
  PutObjectCommand,
  type S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { NotFoundError, StoreError } from '../../errors.ts';
import type { ObjectStore } from '../../ports/objectStore.ts';

const MULTIPART_ABOVE = 8 * 1024 * 1024;

/** The ObjectStore on one S3 bucket. */
export class S3ObjectStore implements ObjectStore {
  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
  ) {}

  url(key: string): string {
    return `s3://${this.bucket}/${key}`;
  }

  async put(
    key: string,
    body: Buffer | string,
    options: { ifNoneMatch?: boolean; contentType?: string } = {},
  ): Promise<void> {
    try {
      if (!options.ifNoneMatch && Buffer.byteLength(body) > MULTIPART_ABOVE) {
        // Big segments go up in parts, two at a time: a failed part is retried alone.
        await new Upload({
          client: this.client,
          params: {
            Bucket: this.bucket,
            Key: key,
            Body: body,
            ...(options.contentType ? { ContentType: options.contentType } : {}),
          },
          partSize: MULTIPART_ABOVE,
          queueSize: 2,
        }).done();
        return;
      }
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ...(options.contentType ? { ContentType: options.contentType } : {}),
          ...(options.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
        }),
      );
    } catch (error) {
      if (
        error instanceof S3ServiceException &&
        (error.$metadata.httpStatusCode === 412 || error.name === 'PreconditionFailed')
      ) {
        throw new StoreError('STORE_CONDITION_FAILED', `${this.url(key)} already exists`, { cause: error });
      }
      throw this.failure(`write ${this.url(key)}`, error);
    }
  }

  async get(key: string): Promise<Buffer> {
    try {
      const result = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const bytes = await result.Body!.transformToByteArray();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength); // a view: no second copy
    } catch (error) {
      if (error instanceof NoSuchKey)
        throw new NotFoundError(`${this.url(key)} does not exist`, { cause: error });
      throw this.failure(`read ${this.url(key)}`, error);
    }
  }

  async exists(key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch (error) {
      if (
        error instanceof NotFound ||
        (error instanceof S3ServiceException && error.$metadata.httpStatusCode === 404)
      )
        return false;
      throw this.failure(`look up ${this.url(key)}`, error);
    }
  }

  async list(prefix: string): Promise<{ key: string; size: number }[]> {
    const objects: { key: string; size: number }[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            ...(token ? { ContinuationToken: token } : {}),
          }),
        );
        for (const o of page.Contents ?? []) objects.push({ key: o.Key!, size: o.Size ?? 0 });
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    } catch (error) {
      throw this.failure(`list ${this.url(prefix)}`, error);
    }
    return objects;
  }

  async delete(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      try {
        await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true },
          }),
        );
      } catch (error) {
        throw this.failure(`delete objects in s3://${this.bucket}`, error);
      }
    }
  }

  private failure(what: string, error: unknown): StoreError {
    if ((error as { name?: string })?.name === 'NoSuchBucket') {
      return new StoreError(
        'STORE_UNAVAILABLE',
        `could not ${what}: bucket ${this.bucket} does not exist (KDR_BUCKET)`,
        { cause: error },
      );
    }
    return new StoreError('STORE_UNAVAILABLE', `could not ${what}`, { cause: error });
  }
}
