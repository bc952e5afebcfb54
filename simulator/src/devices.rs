//! Simulated devices: plausible readings of each [`DeviceKind`] in wardseal-core's device
//! JSON (`wardseal_core::reading::json`), with per-device sequence numbers.
//!
//! Values follow a slow random walk around a physiological baseline plus measurement
//! noise, kept inside a clinical band that lies within the kind's rule ranges, so a
//! simulated device is never refused for its values. The generator is seeded: the same
//! seed gives the same values (timestamps come from the caller).
//!
//! Waveforms are one-second blocks of integer samples with an exact `factor`: an ECG at
//! 250 Hz with a QRS spike per beat, an EEG at 250 Hz dominated by a 10 Hz alpha rhythm,
//! an EMG at 500 Hz with bursts of muscle activity.

use std::fmt::Write as _;

use wardseal_core::reading::Timestamp;

use crate::kinds::DeviceKind;

/// A small deterministic generator (SplitMix64): reproducible runs need no dependency
/// on a particular `rand` version's stream.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform value in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal value (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A quantity drifting slowly inside a band, read with noise.
#[derive(Debug, Clone)]
struct Drifting {
    level: f64,
    low: f64,
    high: f64,
    drift: f64,
    noise: f64,
}

impl Drifting {
    fn new(level: f64, low: f64, high: f64, drift: f64, noise: f64) -> Self {
        Self {
            level,
            low,
            high,
            drift,
            noise,
        }
    }

    fn step(&mut self, rng: &mut SeededRng) -> f64 {
        // Pulled gently back to the middle of the band so a long run does not wander to
        // an edge and stay there.
        let middle = (self.low + self.high) / 2.0;
        self.level += self.drift * rng.normal() + 0.01 * (middle - self.level);
        self.level = self.level.clamp(self.low, self.high);
        (self.level + self.noise * rng.normal()).clamp(self.low, self.high)
    }
}

/// One simulated device's state: its kind, next sequence number and physiology.
#[derive(Debug, Clone)]
pub struct SimulatedDevice {
    kind: DeviceKind,
    sequence: u64,
    rng: SeededRng,
    heart: Drifting,
    primary: Drifting,
    secondary: Drifting,
}

impl SimulatedDevice {
    /// A device of `kind` whose values come from `seed`, starting at sequence number 1.
    pub fn new(kind: DeviceKind, seed: u64) -> Self {
        let mut rng = SeededRng::new(seed ^ u64::from(kind.group()).rotate_left(32));
        let jitter = rng.normal();
        let heart = Drifting::new(72.0 + 6.0 * jitter, 50.0, 130.0, 0.8, 1.0);
        let (primary, secondary) = match kind {
            DeviceKind::PulseOximeter => (
                Drifting::new(97.0, 92.0, 100.0, 0.2, 0.5),
                Drifting::new(0.0, 0.0, 0.0, 0.0, 0.0),
            ),
            DeviceKind::Thermometer => (
                Drifting::new(36.8, 36.0, 38.5, 0.03, 0.05),
                Drifting::new(0.0, 0.0, 0.0, 0.0, 0.0),
            ),
            DeviceKind::Cgm => (
                Drifting::new(110.0, 70.0, 250.0, 2.0, 2.0),
                Drifting::new(0.0, 0.0, 0.0, 0.0, 0.0),
            ),
            DeviceKind::InsulinPen => (
                Drifting::new(6.0, 1.0, 20.0, 0.5, 1.0),
                Drifting::new(0.0, 0.0, 0.0, 0.0, 0.0),
            ),
            DeviceKind::BloodPressure => (
                Drifting::new(120.0, 95.0, 170.0, 1.0, 3.0),
                Drifting::new(78.0, 55.0, 100.0, 0.7, 2.0),
            ),
            // Waveform amplitudes: ECG R wave (mV), EEG alpha (µV), EMG burst (mV).
            DeviceKind::Ecg => (
                Drifting::new(1.2, 0.8, 1.6, 0.02, 0.0),
                Drifting::new(0.0, 0.0, 0.0, 0.0, 0.0),
            ),
            DeviceKind::Eeg => (
                Drifting::new(30.0, 15.0, 60.0, 1.0, 0.0),
                Drifting::new(0.0, 0.0, 0.0, 0.0, 0.0),
            ),
            DeviceKind::Emg => (
                Drifting::new(1.0, 0.2, 3.0, 0.1, 0.0),
                Drifting::new(0.0, 0.0, 0.0, 0.0, 0.0),
            ),
        };
        Self {
            kind,
            sequence: 1,
            rng,
            heart,
            primary,
            secondary,
        }
    }

    /// The kind.
    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    /// The sequence number the next reading gets.
    pub fn next_sequence(&self) -> u64 {
        self.sequence
    }

    /// Sets the next sequence number (to resume after a restart, or to replay on
    /// purpose).
    pub fn set_next_sequence(&mut self, sequence: u64) {
        self.sequence = sequence;
    }

    fn take_sequence(&mut self) -> u64 {
        let sequence = self.sequence;
        self.sequence = self.sequence.saturating_add(1);
        sequence
    }

    /// One report at `time`: a JSON array with one reading per data type the kind
    /// measures, each with the next sequence number.
    pub fn report(&mut self, time: Timestamp) -> String {
        let mut readings = Vec::with_capacity(2);
        match self.kind {
            DeviceKind::Ecg => {
                let rate = self.heart.step(&mut self.rng).round();
                readings.push(self.quantity("heart_rate", &format!("{rate}"), "/min", time));
                let block = self.ecg_block(rate);
                readings.push(self.waveform("ecg", "mV", "4", "0.005", &block, time));
            }
            DeviceKind::Eeg => {
                let block = self.eeg_block();
                readings.push(self.waveform("eeg", "uV", "4", "0.1", &block, time));
            }
            DeviceKind::Emg => {
                let block = self.emg_block();
                readings.push(self.waveform("emg", "mV", "2", "0.001", &block, time));
            }
            DeviceKind::PulseOximeter => {
                let spo2 = self.primary.step(&mut self.rng).round();
                let rate = self.heart.step(&mut self.rng).round();
                readings.push(self.quantity("spo2", &format!("{spo2}"), "%", time));
                readings.push(self.quantity("heart_rate", &format!("{rate}"), "/min", time));
            }
            DeviceKind::Thermometer => {
                let celsius = self.primary.step(&mut self.rng);
                readings.push(self.quantity(
                    "body_temperature",
                    &format!("{celsius:.1}"),
                    "Cel",
                    time,
                ));
            }
            DeviceKind::Cgm => {
                let glucose = self.primary.step(&mut self.rng).round();
                readings.push(self.quantity("cgm_glucose", &format!("{glucose}"), "mg/dL", time));
            }
            DeviceKind::InsulinPen => {
                // Pens dial half units.
                let dose = (self.primary.step(&mut self.rng) * 2.0).round() / 2.0;
                readings.push(self.quantity("insulin_dose", &format!("{dose:.1}"), "[IU]", time));
            }
            DeviceKind::BloodPressure => {
                let systolic = self.primary.step(&mut self.rng).round();
                let diastolic = self
                    .secondary
                    .step(&mut self.rng)
                    .min(systolic - 20.0)
                    .round();
                let sequence = self.take_sequence();
                readings.push(format!(
                    r#"{{"type":"blood_pressure","systolic":{systolic},"diastolic":{diastolic},"unit":"mm[Hg]","time":"{time}","seq":{sequence}}}"#
                ));
            }
        }
        format!("[{}]", readings.join(","))
    }

    fn quantity(&mut self, data_type: &str, value: &str, unit: &str, time: Timestamp) -> String {
        let sequence = self.take_sequence();
        format!(
            r#"{{"type":"{data_type}","value":{value},"unit":"{unit}","time":"{time}","seq":{sequence}}}"#
        )
    }

    fn waveform(
        &mut self,
        data_type: &str,
        unit: &str,
        period_ms: &str,
        factor: &str,
        data: &[i32],
        time: Timestamp,
    ) -> String {
        let sequence = self.take_sequence();
        let mut samples = String::with_capacity(data.len() * 5);
        for (index, sample) in data.iter().enumerate() {
            if index > 0 {
                samples.push(',');
            }
            let _ = write!(samples, "{sample}");
        }
        format!(
            r#"{{"type":"{data_type}","unit":"{unit}","time":"{time}","seq":{sequence},"samples":{{"origin":0,"period_ms":{period_ms},"factor":{factor},"data":[{samples}]}}}}"#
        )
    }

    /// One second of ECG at 250 Hz in units of 5 µV: baseline wander and noise, a P wave,
    /// a sharp QRS complex and a T wave per beat at `rate` beats per minute.
    fn ecg_block(&mut self, rate: f64) -> Vec<i32> {
        let amplitude = self.primary.step(&mut self.rng);
        let beat = 60.0 / rate.max(30.0);
        let offset = self.rng.uniform() * beat;
        let gauss = |t: f64, centre: f64, width: f64| (-((t - centre) / width).powi(2)).exp();
        (0..250)
            .map(|i| {
                let t = (f64::from(i) * 0.004 + offset) % beat;
                let millivolts = 0.15 * gauss(t, 0.1 * beat, 0.025)
                    + amplitude * gauss(t, 0.3 * beat, 0.008)
                    - 0.2 * gauss(t, 0.3 * beat + 0.02, 0.006)
                    + 0.3 * gauss(t, 0.6 * beat, 0.04)
                    + 0.02 * self.rng.normal();
                (millivolts / 0.005).round() as i32
            })
            .collect()
    }

    /// One second of EEG at 250 Hz in units of 0.1 µV: a 10 Hz alpha rhythm plus
    /// broadband noise.
    fn eeg_block(&mut self) -> Vec<i32> {
        let amplitude = self.primary.step(&mut self.rng);
        let phase = self.rng.uniform() * std::f64::consts::TAU;
        (0..250)
            .map(|i| {
                let t = f64::from(i) * 0.004;
                let microvolts = amplitude * (std::f64::consts::TAU * 10.0 * t + phase).sin()
                    + 8.0 * self.rng.normal();
                (microvolts.clamp(-250.0, 250.0) / 0.1).round() as i32
            })
            .collect()
    }

    /// One second of surface EMG at 500 Hz in µV units: low noise at rest and a
    /// contraction burst somewhere in the block.
    fn emg_block(&mut self) -> Vec<i32> {
        let amplitude = self.primary.step(&mut self.rng);
        let start = self.rng.uniform() * 0.6;
        (0..500)
            .map(|i| {
                let t = f64::from(i) * 0.002;
                let envelope = if (start..start + 0.3).contains(&t) {
                    amplitude
                } else {
                    0.02
                };
                let millivolts = (envelope * 0.4 * self.rng.normal()).clamp(-8.0, 8.0);
                (millivolts / 0.001).round() as i32
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::Address;
    use wardseal_contracts::{CheckInput, Rule, RuleBook};
    use wardseal_core::reading::json::parse_body;

    use super::*;

    fn book(kind: DeviceKind) -> RuleBook {
        let rule = Rule {
            rule_id: kind.group(),
            address: Address::ZERO,
            types: kind.type_rules().unwrap(),
        };
        RuleBook::from_parts(&[rule], &[(kind.group(), kind.group())])
    }

    #[test]
    fn every_kind_sends_readings_its_rule_allows() {
        for kind in DeviceKind::ALL {
            let rules = book(kind);
            let mut device = SimulatedDevice::new(kind, 42);
            let mut expected_sequence = 1;
            // Enough reports for the random walks to explore their bands.
            for _ in 0..300 {
                let body = device.report(Timestamp::now());
                let readings = parse_body(body.as_bytes()).unwrap();
                assert_eq!(readings.len(), kind.types().len(), "{kind}: {body}");
                for (reading, limits) in readings.iter().zip(kind.types()) {
                    let measurement = reading.as_ref().unwrap();
                    assert_eq!(measurement.data_type(), limits.data_type, "{kind}");
                    assert_eq!(measurement.sequence(), expected_sequence);
                    expected_sequence += 1;
                    let input = CheckInput::for_measurement(kind.group(), measurement, 1).unwrap();
                    let decision = rules.check(&input);
                    assert!(decision.is_allowed(), "{kind}: {decision:?} for {body}");
                }
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_values() {
        let time = Timestamp::now();
        for kind in DeviceKind::ALL {
            let mut first = SimulatedDevice::new(kind, 7);
            let mut second = SimulatedDevice::new(kind, 7);
            let mut other = SimulatedDevice::new(kind, 8);
            let a: Vec<String> = (0..5).map(|_| first.report(time)).collect();
            let b: Vec<String> = (0..5).map(|_| second.report(time)).collect();
            let c: Vec<String> = (0..5).map(|_| other.report(time)).collect();
            assert_eq!(a, b, "{kind}");
            assert_ne!(a, c, "{kind}");
        }
    }

    #[test]
    fn the_rule_refuses_a_value_outside_the_band() {
        let rules = book(DeviceKind::PulseOximeter);
        let body = format!(
            r#"{{"type":"spo2","value":101,"unit":"%","time":"{}","seq":1}}"#,
            Timestamp::now()
        );
        let readings = parse_body(body.as_bytes()).unwrap();
        let input = CheckInput::for_measurement(
            DeviceKind::PulseOximeter.group(),
            readings[0].as_ref().unwrap(),
            1,
        )
        .unwrap();
        assert!(!rules.check(&input).is_allowed());
    }
}
