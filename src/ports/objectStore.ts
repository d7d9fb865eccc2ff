/** Where segments and manifests live (S3 in production, moto in the lab). */
export interface ObjectStore {
  /** Writes an object; with `ifNoneMatch`, fails (ALREADY_EXISTS) instead of overwriting. */
  put(
    key: string,
    body: Buffer | string,
    options?: { ifNoneMatch?: boolean; contentType?: string },
  ): Promise<void>;
  get(key: string): Promise<Buffer>;
  exists(key: string): Promise<boolean>;
  list(prefix: string): Promise<{ key: string; size: number }[]>;
  delete(keys: string[]): Promise<void>;
  /** s3://bucket/key, for reports. */
  url(key: string): string;
}
