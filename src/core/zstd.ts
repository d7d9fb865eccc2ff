import * as zstdWasm from '@bokuweb/zstd-wasm';

/**
 * The one zstd WASM instance of a process. Its loader must run once: a second `init` rebinds the module's
 * memory views while functions already called stay bound to the first instance (seen in the library's
 * code), so snapshot segments and Kafka batches share this loader.
 */

let ready: Promise<void> | undefined;
const loaded = () => (ready ??= zstdWasm.init());

/** A Buffer over the codec's own copy (it returns a fresh array): no second copy of a whole segment. */
const asBuffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

export async function zstdCompress(input: Buffer, level: number): Promise<Buffer> {
  await loaded();
  return asBuffer(zstdWasm.compress(input, level));
}

/** For frames that carry their content size (every frame zstdCompress writes does). */
export async function zstdDecompress(input: Buffer): Promise<Buffer> {
  await loaded();
  return asBuffer(zstdWasm.decompress(input));
}
