// storage/tests/fhir.rs runs this: a FHIR client library not written here (fhir-kit-client)
// talks to wardseal storage's /fhir over mutual TLS, and every resource the server returns
// is validated against the official FHIR R4 JSON schema (schema.mjs). All versions are pinned in
// package-lock.json. Prints one JSON report as its last line; exits 1 on any failure.
//
// Environment: FHIR_BASE (https://127.0.0.1:PORT/fhir), FHIR_CA, FHIR_CERT and FHIR_KEY
// (the responsible nurse), FHIR_PATIENT_CERT and FHIR_PATIENT_KEY (the patient's card),
// FHIR_EXPECTED (JSON: observations in date order, the flag id, the device id).

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
const expected = JSON.parse(env('FHIR_EXPECTED'));

// Client certificates through undici's global dispatcher (Node's fetch, which
// fhir-kit-client uses, takes TLS options from it).
function as(certificate, key) {
  setGlobalDispatcher(
    new Agent({
      connect: { ca: readFileSync(env('FHIR_CA')), cert: readFileSync(certificate), key: readFileSync(key) },
    }),
  );
  return new Client({ baseUrl: env('FHIR_BASE') });
}

// The OperationOutcome of a refused request, validated.
async function refused(promise, status, code, where) {
  try {
    await promise;
  } catch (error) {
    assert.equal(error.response?.status, status, `${where}: ${error.message}`);
    const outcome = validate(error.response.data, where);
    assert.equal(outcome.resourceType, 'OperationOutcome', where);
    assert.equal(outcome.issue[0].details.coding[0].code, code, where);
    return outcome;
  }
  throw new Error(`${where}: expected HTTP ${status}, got success`);
}

const ids = (bundle) => (bundle.entry ?? []).map((entry) => entry.resource.id);

const nurse = as(env('FHIR_CERT'), env('FHIR_KEY'));

// The CapabilityStatement, read as a client does before anything else.
const statement = validate(await nurse.capabilityStatement(), 'metadata');
const tool = new CapabilityTool(statement);
for (const [resource, parameter] of [
  ['Observation', 'code'],
  ['Observation', 'date'],
  ['Observation', '_lastUpdated'],
  ['Flag', 'status'],
  ['Encounter', 'status'],
  ['Provenance', 'target'],
]) {
  assert.ok(tool.resourceSearch(resource, parameter), `${resource}?${parameter} advertised`);
}
assert.ok(tool.resourceCan('Observation', 'search-type'));
assert.ok(tool.resourceCan('Patient', 'read'));
assert.ok(!tool.resourceSearch('Observation', 'value-quantity'), 'nothing unsupported advertised');

// A search paged by next links to the end, then one page back by the previous link.
let page = validate(
  await nurse.search({
    resourceType: 'Observation',
    searchParams: { patient: 'Patient/patient-1', code: 'http://loinc.org|8867-4', _count: 25 },
  }),
  'Observation search',
);
const pages = [ids(page)];
let last = page;
for (;;) {
  const next = await nurse.nextPage({ bundle: last });
  if (!next) break;
  last = validate(next, `Observation page ${pages.length + 1}`);
  pages.push(ids(last));
  assert.ok(pages.length <= 100, 'paging ends');
}
assert.deepEqual(pages.flat(), expected.observations, 'every Observation once, in date order');
const previous = validate(await nurse.prevPage({ bundle: last }), 'previous page');
assert.deepEqual(ids(previous), pages[pages.length - 2]);

// Reads of each resource type the server serves.
const observation = validate(
  await nurse.read({ resourceType: 'Observation', id: expected.observations[0] }),
  'Observation read',
);
assert.equal(observation.code.coding[0].code, '8867-4');
validate(await nurse.read({ resourceType: 'Patient', id: 'patient-1' }), 'Patient read');
validate(await nurse.search({ resourceType: 'Patient', searchParams: {} }), 'Patient search');
const encounters = validate(
  await nurse.search({ resourceType: 'Encounter', searchParams: { status: 'in-progress' } }),
  'Encounter search',
);
validate(await nurse.read({ resourceType: 'Encounter', id: encounters.entry[0].resource.id }), 'Encounter read');
validate(await nurse.search({ resourceType: 'Device', searchParams: { patient: 'patient-1' } }), 'Device search');
validate(await nurse.read({ resourceType: 'Device', id: expected.device }), 'Device read');
validate(
  await nurse.search({ resourceType: 'Flag', searchParams: { patient: 'patient-1', status: 'active' } }),
  'Flag search',
);
validate(await nurse.read({ resourceType: 'Flag', id: expected.flag }), 'Flag read');
const acknowledged = validate(
  await nurse.operation({ name: 'acknowledge', resourceType: 'Flag', id: expected.flag }),
  'Flag $acknowledge',
);
assert.equal(acknowledged.id, expected.flag);
const consents = validate(
  await nurse.search({ resourceType: 'Consent', searchParams: { patient: 'patient-1' } }),
  'Consent search',
);
assert.equal(consents.total, 1);
validate(await nurse.read({ resourceType: 'Consent', id: consents.entry[0].resource.id }), 'Consent read');
const provenances = validate(
  await nurse.search({
    resourceType: 'Provenance',
    searchParams: { target: `Observation/${expected.observations[60]}` },
  }),
  'Provenance search',
);
validate(
  await nurse.read({ resourceType: 'Provenance', id: provenances.entry[0].resource.id }),
  'Provenance read',
);
const audit = validate(
  await nurse.search({ resourceType: 'AuditEvent', searchParams: { patient: 'patient-1', _count: 5 } }),
  'AuditEvent search',
);
validate(await nurse.nextPage({ bundle: audit }), 'AuditEvent next page');
validate(await nurse.read({ resourceType: 'AuditEvent', id: audit.entry[0].resource.id }), 'AuditEvent read');

// Search handling: strict refuses what it does not know, lenient ignores it.
await refused(
  nurse.search({ resourceType: 'Observation', searchParams: { patient: 'patient-1', color: 'blue' } }),
  400,
  'unknown_parameter',
  'strict handling',
);
const lenient = validate(
  await nurse.search({
    resourceType: 'Observation',
    searchParams: { patient: 'patient-1', color: 'blue', _summary: 'count' },
    options: { headers: { prefer: 'handling=lenient' } },
  }),
  'lenient handling',
);
assert.equal(lenient.total, expected.observations.length);
await refused(
  nurse.read({ resourceType: 'Patient', id: 'patient-1', options: { headers: { accept: 'application/fhir+xml' } } }),
  415,
  'unsupported_format',
  'XML asked for',
);
await refused(
  nurse.search({ resourceType: 'Observation', searchParams: { patient: 'patient-2' } }),
  403,
  'not_responsible',
  'another patient',
);

// The patient's own card: their own observations, nobody else's.
const patient = as(env('FHIR_PATIENT_CERT'), env('FHIR_PATIENT_KEY'));
const own = validate(
  await patient.search({ resourceType: 'Observation', searchParams: { _summary: 'count' } }),
  'own observations',
);
assert.equal(own.total, expected.observations.length);
await refused(
  patient.search({ resourceType: 'Observation', searchParams: { patient: 'patient-2' } }),
  403,
  'not_own_record',
  'a patient reading another',
);

console.log(JSON.stringify({ pages: pages.length, validated: [...validated].sort() }));
