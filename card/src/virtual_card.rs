//! [`VirtualCard`]: a smart card that lives in a thread and sits in a `vsmartcard-vpcd`
//! reader, for tests and the demo.
//!
//! vpcd is a pcscd reader driver that listens on TCP (35963 for "Virtual PCD 00 00",
//! 35964 for "… 00 01"). A card connects to it; while connected it is in the reader, and
//! closing the connection pulls it out. Frames are a 2-byte big-endian length and a
//! payload; a 1-byte payload is a control code (0 power off, 1 power on, 2 reset, 4 send
//! the ATR), anything longer a command APDU that must be answered. This card answers every
//! APDU with `6D 00` (instruction not supported) except SELECT, answered `90 00`: enough
//! for pcscd, OpenSC and the watcher, which only need a card that is there.
//!
//! Debian's own `vicc` is broken (module path, PyCrypto, bytes handling), hence this.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::thread::JoinHandle;

use crate::Error;

/// vpcd's port for the first virtual reader ("Virtual PCD 00 00").
pub const VPCD_PORT: u16 = 35963;

/// A virtual card for a vpcd reader.
#[derive(Debug)]
pub struct VirtualCard {
    address: String,
    atr: Vec<u8>,
    inserted: Option<(TcpStream, JoinHandle<()>)>,
}

impl VirtualCard {
    /// A card with this ATR for the vpcd reader at `address` (e.g. `127.0.0.1:35963`).
    pub fn new(address: &str, atr: &[u8]) -> Self {
        Self {
            address: address.to_owned(),
            atr: atr.to_vec(),
            inserted: None,
        }
    }

    /// The card's ATR.
    pub fn atr(&self) -> &[u8] {
        &self.atr
    }

    /// Whether the card is in the reader.
    pub fn is_inserted(&self) -> bool {
        self.inserted.is_some()
    }

    /// Puts the card in the reader: connects to vpcd and answers it from a thread.
    pub fn insert(&mut self) -> Result<(), Error> {
        if self.inserted.is_some() {
            return Ok(());
        }
        let error = |source| Error::VirtualCard {
            address: self.address.clone(),
            source,
        };
        let stream = TcpStream::connect(&self.address).map_err(error)?;
        stream.set_nodelay(true).map_err(error)?;
        let reader = stream.try_clone().map_err(error)?;
        let atr = self.atr.clone();
        let thread = std::thread::Builder::new()
            .name("wardseal-virtual-card".to_owned())
            .spawn(move || serve(reader, &atr))
            .map_err(error)?;
        self.inserted = Some((stream, thread));
        Ok(())
    }

    /// Pulls the card out: closes the connection and waits for the thread to end.
    pub fn remove(&mut self) {
        if let Some((stream, thread)) = self.inserted.take() {
            let _ = stream.shutdown(Shutdown::Both);
            let _ = thread.join();
        }
    }
}

impl Drop for VirtualCard {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Answers vpcd until the connection closes.
fn serve(mut stream: TcpStream, atr: &[u8]) {
    let mut buffer = vec![0u8; 65_538];
    loop {
        let mut length = [0u8; 2];
        if stream.read_exact(&mut length).is_err() {
            return;
        }
        let length = usize::from(u16::from_be_bytes(length));
        let Some(payload) = buffer.get_mut(..length) else {
            return;
        };
        if stream.read_exact(payload).is_err() {
            return;
        }
        let reply: &[u8] = match payload {
            // Power off, power on, reset: no answer.
            [0..=2] => continue,
            [4] => atr,
            [_] => continue,
            // SELECT (CLA 00, INS A4): pretend the application is there.
            [0x00, 0xa4, ..] => &[0x90, 0x00],
            _ => &[0x6d, 0x00],
        };
        let Ok(reply_length) = u16::try_from(reply.len()) else {
            return;
        };
        let mut frame = reply_length.to_be_bytes().to_vec();
        frame.extend_from_slice(reply);
        if stream.write_all(&frame).is_err() {
            return;
        }
    }
}
