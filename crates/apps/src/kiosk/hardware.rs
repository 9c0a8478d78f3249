//! The kiosk's real hardware on Linux (the `hardware` feature): a PN532 NFC reader and a
//! WS281x LED strip, each on an SPI device (`/dev/spidevB.C`).
//!
//! Built by `scripts/test` but run only on a kiosk: the tests use the mocks.

use std::convert::Infallible;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use linux_embedded_hal::spidev::{SpiModeFlags, SpidevOptions};
use linux_embedded_hal::{SpidevBus, SpidevDevice};
use pn532::requests::SAMMode;
use pn532::spi::SPIInterface;
use pn532::{Error as Pn532Error, Pn532, Request};
use smart_leds_trait::{RGB8, SmartLedsWrite};
use switchboard_proto::kiosk::Color;
use ws2812_spi::Ws2812;

use super::led::{LedError, LedStrip};
use super::reader::{ReaderError, TagReader};

/// The PN532's clock on SPI: it takes up to 5 MHz; 1 MHz is safe on long jumper wires.
const PN532_SPI_HZ: u32 = 1_000_000;
/// WS281x bits are encoded as SPI bit patterns, which needs 2 to 3.8 MHz.
const WS281X_SPI_HZ: u32 = 3_000_000;
/// Bytes the longest reply of interest takes: InListPassiveTarget with a 10-byte uid.
const INLIST_REPLY: usize = 16;

/// A timer for the PN532 driver, on the thread's clock. Waiting sleeps a little between checks,
/// so polling for a tag does not spin a core.
struct ThreadTimer(Instant);

impl pn532::CountDown for ThreadTimer {
    type Time = Duration;

    fn start<T: Into<Duration>>(&mut self, count: T) {
        self.0 = Instant::now() + count.into();
    }

    fn wait(&mut self) -> pn532::nb::Result<(), Infallible> {
        if Instant::now() >= self.0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
        Err(pn532::nb::Error::WouldBlock)
    }
}

/// A PN532 on SPI (mode 0; the Raspberry Pi's controller sends MSB first, hence the driver's
/// `msb-spi` feature).
pub struct Pn532Reader {
    pn532: Pn532<SPIInterface<SpidevDevice>, ThreadTimer, 32>,
}

impl Pn532Reader {
    /// Opens the reader on `device` and puts it in normal mode.
    pub fn open(device: &str) -> Result<Self, ReaderError> {
        let mut spi = SpidevDevice::open(device).map_err(|e| ReaderError(format!("{device}: {e}")))?;
        spi.0
            .configure(
                &SpidevOptions::new()
                    .bits_per_word(8)
                    .max_speed_hz(PN532_SPI_HZ)
                    .mode(SpiModeFlags::SPI_MODE_0)
                    .build(),
            )
            .map_err(|e| ReaderError(format!("{device}: {e}")))?;
        let mut pn532 = Pn532::new(SPIInterface { spi }, ThreadTimer(Instant::now()));
        pn532
            .process(
                &Request::sam_configuration(SAMMode::Normal, false),
                0,
                Duration::from_millis(100),
            )
            .map_err(|e| ReaderError(format!("the PN532 on {device} does not answer: {e:?}")))?;
        Ok(Pn532Reader { pn532 })
    }
}

impl TagReader for Pn532Reader {
    fn driver(&self) -> &'static str {
        "pn532"
    }

    fn poll(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, ReaderError> {
        match self
            .pn532
            .process(&Request::INLIST_ONE_ISO_A_TARGET, INLIST_REPLY, timeout)
        {
            // [targets, target no., SENS_RES (2), SEL_RES, uid length, uid…]
            Ok(reply) if reply.first() == Some(&1) && reply.len() >= 5 => {
                let len = reply[4] as usize;
                Ok(reply.get(5..5 + len).map(<[u8]>::to_vec))
            }
            Ok(_) => Ok(None),
            Err(Pn532Error::TimeoutResponse) => {
                // No tag came: the PN532 is still listing targets, so call that off.
                self.pn532
                    .abort()
                    .map_err(|e| ReaderError(format!("abort failed: {e:?}")))?;
                Ok(None)
            }
            Err(e) => Err(ReaderError(format!("{e:?}"))),
        }
    }
}

/// A WS281x strip whose data line is the MOSI of an SPI bus the strip has to itself. Frames
/// are written by a thread of its own; one that comes while the previous is still being
/// written is dropped (the driver calls at most 30 times a second, and a write takes ~1 ms).
pub struct Ws281xStrip {
    leds: usize,
    frames: SyncSender<Vec<Color>>,
}

impl Ws281xStrip {
    pub fn open(device: &str, leds: usize) -> Result<Self, LedError> {
        let mut spi = SpidevBus::open(device).map_err(|e| LedError(format!("{device}: {e}")))?;
        spi.0
            .configure(
                &SpidevOptions::new()
                    .bits_per_word(8)
                    .max_speed_hz(WS281X_SPI_HZ)
                    .mode(SpiModeFlags::SPI_MODE_0)
                    .build(),
            )
            .map_err(|e| LedError(format!("{device}: {e}")))?;
        let mut strip = Ws2812::new(spi);
        let (frames, incoming) = sync_channel::<Vec<Color>>(1);
        std::thread::Builder::new()
            .name("ws281x".into())
            .spawn(move || {
                for frame in incoming {
                    let pixels = frame.iter().map(|c| RGB8::new(c.0[0], c.0[1], c.0[2]));
                    if let Err(e) = strip.write(pixels) {
                        tracing::warn!(error = ?e, "kiosk: LED strip write failed");
                    }
                }
            })
            .map_err(|e| LedError(format!("cannot start the LED thread: {e}")))?;
        Ok(Ws281xStrip { leds, frames })
    }
}

impl LedStrip for Ws281xStrip {
    fn driver(&self) -> &'static str {
        "ws281x"
    }

    fn leds(&self) -> usize {
        self.leds
    }

    fn show(&mut self, pixels: &[Color]) -> Result<(), LedError> {
        match self.frames.try_send(pixels.to_vec()) {
            Ok(()) | Err(TrySendError::Full(_)) => Ok(()),
            Err(TrySendError::Disconnected(_)) => Err(LedError("the LED thread has stopped".into())),
        }
    }
}
