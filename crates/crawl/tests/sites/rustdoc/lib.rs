//! Flock counts sheep.
//!
//! Start with [`Pen`], or count a slice at once with [`count`]:
//!
//! ```
//! let flock = [3, 1, 4];
//! assert_eq!(flock::count(&flock), 8);
//! ```
//!
//! The crate has:
//!
//! - [`Pen`], a pen of sheep;
//! - [`Woolly`], what can be shorn;
//! - [`gate`], the opening hours.
//!
//! | Breed | Wool per year |
//! |-------|---------------|
//! | Merino | 4.5 kg |
//! | Suffolk | 2.5 kg |

/// Counts the sheep of a flock, the big ones noted.[^gate]
///
/// [^gate]: At the north gate, where the path is narrow.
///
/// # Examples
///
/// ```
/// let total = flock::count(&[3, 1, 4]);
/// if total > 5 {
///     println!("a big flock: {total}");
/// }
/// ```
pub fn count(flock: &[u32]) -> u32 {
    flock.iter().sum()
}

/// What can be shorn.
pub trait Woolly {
    /// Kilograms of wool a shearing gives.
    fn wool(&self) -> f32;
}

/// A pen that holds sheep until shearing.
///
/// Its size comes from the flock's configuration file:
///
/// ```toml
/// [pen]
/// size = 40
///     # indented on purpose
/// ```
///
/// The tools that fill it build with this Makefile (recipe lines start
/// with a tab):
///
/// ```makefile
/// fill: fill.c
/// 	$(CC) -o $@ $<
/// ```
pub struct Pen<S> {
    sheep: Vec<S>,
}

impl<S: Woolly> Pen<S> {
    /// An empty pen.
    pub fn new() -> Pen<S> {
        Pen { sheep: Vec::new() }
    }

    /// Puts one sheep in the pen.
    ///
    /// ```
    /// # struct Ewe;
    /// # impl flock::Woolly for Ewe { fn wool(&self) -> f32 { 4.5 } }
    /// let mut pen = flock::Pen::new();
    /// for _ in 0..3 {
    ///     pen.add(Ewe);
    /// }
    /// ```
    pub fn add(&mut self, sheep: S) {
        self.sheep.push(sheep);
    }

    /// The wool of all the sheep in the pen.
    pub fn shear(&self) -> f32 {
        self.sheep.iter().map(Woolly::wool).sum()
    }
}

impl<S: Woolly> Default for Pen<S> {
    fn default() -> Self {
        Pen::new()
    }
}

/// When the gate opens and closes.
pub mod gate {
    /// Opening hours, as "HH:MM".
    pub struct Hours {
        /// When the gate opens.
        pub opens: &'static str,
        /// When it closes.
        pub closes: &'static str,
    }

    /// The hours of a summer day.
    ///
    /// ```python
    /// def hours():
    ///     return {
    ///         "opens": "06:00",
    ///         "closes": "20:00",
    ///     }
    /// ```
    pub const SUMMER: Hours = Hours {
        opens: "06:00",
        closes: "20:00",
    };
}
