/** Where kdr reads the credentials it must not keep in its environment (Secrets Manager in AWS). */
export interface SecretSource {
  /** The secret's current string value; throws naming the secret (never its value) when it cannot. */
  getSecretString(secretArn: string): Promise<string>;
}
