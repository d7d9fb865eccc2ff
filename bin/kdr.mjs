#!/usr/bin/env node
// The kdr CLI runs the TypeScript sources directly through tsx, so a checkout never runs a stale build.
import { register } from 'tsx/esm/api';

// Node 20 machines (this lab, CI) get a deprecation notice from the AWS SDK on every command; Lambda runs 22.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

register();
await import('../src/cli/main.ts');
