// storage/tests/authorities.rs runs this: an authority (a laboratory with the patient's
// on-chain consent) uses a FHIR client library not written here (fhir-kit-client) over
// mutual TLS to find that the server can create Encounters, record a visit as one, read
// it back and find it in a search; a visit for a patient with no account is refused with
// an OperationOutcome. Every resource is validated against the official FHIR R4 JSON
// schema (schema.mjs). Prints one JSON report as its last line; exits 1 on any failure.
//
// Environment: FHIR_BASE (https://127.0.0.1:PORT/fhir), FHIR_CA, FHIR_CERT and FHIR_KEY
// (the laboratory's certificate), FHIR_PATIENT (the consenting patient's id),
// FHIR_STRANGER (a patient storage knows no account for).

import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { Client, CapabilityTool } from 'fhir-kit-client';
import { Agent, setGlobalDispatcher } from 'undici';
import { validate, validated } from './schema.mjs';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

setGlobalDispatcher(
  new Agent({
    connect: {
      ca: readFileSync(env('FHIR_CA')),
      cert: readFileSync(env('FHIR_CERT')),
      key: readFileSync(env('FHIR_KEY')),
    },
  }),
);
const lab = new Client({ baseUrl: env('FHIR_BASE') });
const patient = env('FHIR_PATIENT');

const statement = validate(await lab.capabilityStatement(), 'metadata');
const tool = new CapabilityTool(statement);
assert.ok(tool.resourceCan('Encounter', 'create'), 'the statement offers Encounter create');

const encounter = (subject) => ({
  resourceType: 'Encounter',
  status: 'finished',
  class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
  subject: { reference: `Patient/${subject}` },
  period: { start: '2026-12-08T08:00:00Z', end: '2026-12-08T08:20:00Z' },
  reasonCode: [{ text: 'blood draw' }],
});
validate(encounter(patient), 'the request');

const created = validate(
  await lab.create({ resourceType: 'Encounter', body: encounter(patient) }),
  'Encounter create',
);
assert.match(created.id, /^visit-[1-9][0-9]*$/);
assert.equal(created.class.code, 'AMB');
assert.equal(created.status, 'finished');

const read = validate(await lab.read({ resourceType: 'Encounter', id: created.id }), 'Encounter read');
assert.deepEqual(read, created);

const found = validate(
  await lab.search({ resourceType: 'Encounter', searchParams: { patient } }),
  'Encounter search',
);
const ids = (found.entry ?? []).map((entry) => entry.resource.id);
assert.ok(ids.includes(created.id), `the search finds ${created.id}: ${ids}`);

let refusal;
try {
  await lab.create({ resourceType: 'Encounter', body: encounter(env('FHIR_STRANGER')) });
} catch (error) {
  assert.equal(error.response?.status, 403, error.message);
  refusal = validate(error.response.data, 'refused create');
}
assert.ok(refusal, 'a visit for a patient with no account is refused');
assert.equal(refusal.issue[0].details.coding[0].code, 'patient_account_unknown');

console.log(
  JSON.stringify({ created: created.id, visits: ids.filter((id) => id.startsWith('visit-')).length, validated: [...validated].sort() }),
);
