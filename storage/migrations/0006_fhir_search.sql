-- FHIR Observation searches (storage/src/store/fhir.rs): one patient's readings of one or a
-- few data types in time order, each page continued from the last row's unique key
-- (measured_at, batch_hash, position). With this index a page is one range scan, however
-- deep in the patient's history it starts.
CREATE INDEX readings_fhir_search ON readings (patient, data_type, measured_at, batch_hash, position);
