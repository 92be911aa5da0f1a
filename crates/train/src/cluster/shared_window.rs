//! Summing gradients between the ranks of one host through memory they
//! share (an MPI-3 shared window), and across hosts through MPI.
//!
//! Why: OpenMPI's all-reduce between two processes of one host copies each
//! buffer through its own shared-memory fragments and sums on the way,
//! which takes a large share of a step, most of it CPU time taken from the
//! ranks' own compute.
//! Here each rank of a host owns one segment of a window that every rank of
//! the host maps (`MPI_Win_allocate_shared`), and a sum of `len` floats is:
//!
//! 1. each rank copies into its own segment the slices of its buffer that
//!    the other ranks sum, and raises `ready`;
//! 2. rank r of the host sums slice r of every rank's buffer (its own in
//!    place, the others' from their segments), in rank order, (with several
//!    hosts, it then all-reduces that slice over MPI with the ranks of the
//!    same local index on the other hosts: the hierarchical all-reduce),
//!    copies the result to its segment and raises `summed`;
//! 3. each rank copies every other slice from the rank that summed it and
//!    raises `released`, after which the others may overwrite their
//!    segments.
//!
//! So each float is read and written a few times in memory and never sent
//! through a message. Flags are generation counts: every rank calls in the
//! same order, so call number g is the same call everywhere, and a flag at
//! g or above means "done for call g". They are written with release and
//! read with acquire ordering, which orders the data on every CPU that
//! shares memory coherently. The sum is in rank order, the same on every
//! rank and in every run, so runs with the same layout stay bit-identical.

use super::polite_sum::sum_politely;
use crate::tree::share;
use mpi::collective::SystemOperation;
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bytes before the data in each rank's segment: three flags, each on its
/// own cache line.
const FLAGS_BYTES: usize = 256;
const READY: usize = 0;
const SUMMED: usize = 1;
const RELEASED: usize = 2;

/// The ranks of this host, and the ranks of the same local index on the
/// other hosts.
pub struct NodeReduce {
    node: SimpleCommunicator,
    across: Option<SimpleCommunicator>,
    me: usize,
    ranks: usize,
    window: Option<Window>,
    /// Calls so far (the last call's generation).
    generation: u64,
    /// The shared-memory directory was too small on some host: every rank
    /// went back to MPI's all-reduce for the rest of the run.
    refused: bool,
    /// Windows of [`NodeReduce::shared_words`], mapped until
    /// [`NodeReduce::free_shared_words`].
    kept: Vec<ffi::MPI_Win>,
}

/// One shared window: each local rank's segment, mapped in this process.
struct Window {
    handle: ffi::MPI_Win,
    bases: Vec<*mut u8>,
    /// Floats each segment holds.
    capacity: usize,
}

/// One call's view of the window: its generation and the segments.
struct Call<'w> {
    window: &'w Window,
    g: u64,
    me: usize,
    ranks: usize,
}

impl Call<'_> {
    fn flag(&self, rank: usize, which: usize) -> &AtomicU64 {
        // SAFETY: each segment starts with FLAGS_BYTES of flags, 64-byte
        // aligned, which live as long as the window.
        unsafe { &*(self.window.bases[rank].add(which * 64) as *const AtomicU64) }
    }

    /// "Done for this call" on my flag `which`.
    fn raise(&self, me: usize, which: usize) {
        self.flag(me, which).store(self.g, Ordering::Release);
    }

    fn wait(&self, rank: usize, which: usize) {
        wait_for(self.flag(rank, which), self.g);
    }

    /// Waits for flag `which` of every other rank.
    fn wait_all(&self, which: usize) {
        for q in (0..self.ranks).filter(|&q| q != self.me) {
            self.wait(q, which);
        }
    }

    /// `mine` of every local rank's buffer summed in rank order (mine from
    /// `own`, or from `buf` itself without it; the others' from their
    /// segments, which they filled: `ready`) into `buf`.
    fn sum_share(&self, own: Option<&[f32]>, buf: &mut [f32], mine: std::ops::Range<usize>) {
        if self.ranks == 2 {
            // One pass: mine plus the other rank's, in place. Two floats
            // add the same in either order, so this is the rank-order sum.
            // SAFETY: as below.
            let other = unsafe { self.slice(1 - self.me, mine.clone()) };
            let out = &mut buf[mine.clone()];
            match own {
                Some(own) => {
                    for ((o, a), b) in out.iter_mut().zip(&own[mine]).zip(other) {
                        *o = a + b;
                    }
                }
                None => {
                    for (o, b) in out.iter_mut().zip(other) {
                        *o += b;
                    }
                }
            }
            return;
        }
        const CHUNK: usize = 2048;
        let mut acc = [0.0f32; CHUNK];
        let mut at = mine.start;
        while at < mine.end {
            let n = CHUNK.min(mine.end - at);
            let acc = &mut acc[..n];
            for q in 0..self.ranks {
                let src = if q == self.me {
                    match own {
                        Some(own) => &own[at..at + n],
                        None => &buf[at..at + n],
                    }
                } else {
                    // SAFETY: rank q filled this slice of its segment
                    // (ready) and leaves it alone until I release it.
                    unsafe { self.slice(q, at..at + n) }
                };
                if q == 0 {
                    acc.copy_from_slice(src);
                } else {
                    for (a, x) in acc.iter_mut().zip(src) {
                        *a += x;
                    }
                }
            }
            buf[at..at + n].copy_from_slice(acc);
            at += n;
        }
    }

    /// Step 1 of a sum: the slices of `src` the other ranks sum (`share`
    /// of each), into my segment; then `ready`, and the wait for theirs.
    fn offer_and_wait(&self, src: &[f32], share: impl Fn(usize) -> std::ops::Range<usize>) {
        for q in (0..self.ranks).filter(|&q| q != self.me) {
            let theirs = share(q);
            // SAFETY: my segment, which no other rank reads before `ready`.
            unsafe { self.slice_mut(self.me, theirs.clone()) }.copy_from_slice(&src[theirs]);
        }
        self.raise(self.me, READY);
        self.wait_all(READY);
    }

    /// Every other rank's `share` of `buf` from its segment, once its flag
    /// `which` is up (it stays so until I raise `released`).
    fn take_theirs(
        &self,
        buf: &mut [f32],
        which: usize,
        share: impl Fn(usize) -> std::ops::Range<usize>,
    ) {
        for q in (0..self.ranks).filter(|&q| q != self.me) {
            let theirs = share(q);
            self.wait(q, which);
            // SAFETY: rank q's slice is final and stays so until I release.
            buf[theirs.clone()].copy_from_slice(unsafe { self.slice(q, theirs) });
        }
    }

    fn data(&self, rank: usize) -> *mut f32 {
        self.window.bases[rank].wrapping_add(FLAGS_BYTES) as *mut f32
    }

    /// Floats `r` of `rank`'s segment.
    ///
    /// # Safety
    /// No rank writes them meanwhile (the flags say so).
    unsafe fn slice(&self, rank: usize, r: std::ops::Range<usize>) -> &[f32] {
        assert!(r.end <= self.window.capacity);
        unsafe { std::slice::from_raw_parts(self.data(rank).add(r.start), r.len()) }
    }

    /// Floats `r` of `rank`'s segment, to write.
    ///
    /// # Safety
    /// `rank` is this rank, and no rank reads them meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice_mut(&self, rank: usize, r: std::ops::Range<usize>) -> &mut [f32] {
        assert!(r.end <= self.window.capacity);
        unsafe { std::slice::from_raw_parts_mut(self.data(rank).add(r.start), r.len()) }
    }
}

/// The size every local rank's segment needs for `floats`.
fn segment_bytes(floats: usize) -> usize {
    (FLAGS_BYTES + floats * size_of::<f32>()).next_multiple_of(4096)
}

/// Waits politely (the waiting thread shares the cores with this rank's
/// spheres): a few yields, then short sleeps.
fn wait_for(flag: &AtomicU64, generation: u64) {
    let mut tries = 0u32;
    while flag.load(Ordering::Acquire) < generation {
        tries += 1;
        if tries < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

/// Where local rank `rank`'s segment of a shared window is mapped in this
/// process.
fn segment_of(handle: ffi::MPI_Win, rank: usize) -> *mut u8 {
    let (mut size, mut unit, mut at): (ffi::MPI_Aint, i32, *mut u8) = (0, 0, std::ptr::null_mut());
    // SAFETY: a live window; MPI writes the segment's size, unit and address.
    unsafe {
        ffi::MPI_Win_shared_query(
            handle,
            rank as i32,
            &mut size,
            &mut unit,
            (&mut at as *mut *mut u8).cast(),
        );
    }
    at
}

/// Whether the shared-memory directory of every rank's host has room for
/// `bytes` more (with an eighth to spare). Collective over `world`: every
/// rank gets the same answer.
fn room_everywhere(world: &SimpleCommunicator, bytes: u64) -> bool {
    let fits = backing_free_bytes().is_some_and(|free| free > bytes + bytes / 8);
    let mut all_fit = 0i32;
    world.all_reduce_into(&i32::from(fits), &mut all_fit, SystemOperation::min());
    all_fit != 0
}

/// Bytes free in the directory OpenMPI puts shared windows in (`None` when
/// it cannot be read).
fn backing_free_bytes() -> Option<u64> {
    let dir =
        std::env::var("OMPI_MCA_osc_sm_backing_directory").unwrap_or_else(|_| "/dev/shm".into());
    let path = std::ffi::CString::new(dir).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a statvfs the call fills.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

impl NodeReduce {
    /// The hierarchy of `world`, when it helps: `None` with one rank per
    /// host (MPI's all-reduce is then the whole job), when hosts run
    /// different numbers of ranks (the slices would not line up across
    /// hosts), or when `CLLM_MPI_SHARED_MEMORY=0` asks for MPI's own
    /// all-reduce. Collective over `world`.
    pub fn new(world: &SimpleCommunicator) -> Option<NodeReduce> {
        let node = world.split_shared(world.rank());
        let (me, ranks) = (node.rank() as usize, node.size() as usize);
        let mut counts = vec![0i32; world.size() as usize];
        world.all_gather_into(&(ranks as i32), &mut counts[..]);
        let off = std::env::var("CLLM_MPI_SHARED_MEMORY").is_ok_and(|v| v == "0");
        // The same answer on every rank: a world of hosts with equal counts.
        if off || ranks < 2 || counts.iter().any(|&c| c != counts[0]) {
            return None;
        }
        let hosts = world.size() as usize / ranks;
        let across = (hosts > 1).then(|| {
            world
                .split_by_color_with_key(Color::with_value(me as i32), world.rank())
                .expect("every rank has a color")
        });
        Some(NodeReduce {
            node,
            across,
            me,
            ranks,
            window: None,
            generation: 0,
            refused: false,
            kept: Vec::new(),
        })
    }

    /// Ranks on this host.
    pub fn local_ranks(&self) -> usize {
        self.ranks
    }

    /// Sums `buf` across every rank of the job, in place. Returns false
    /// (having done nothing) when the shared window could not be had; the
    /// caller then uses MPI's all-reduce. Every rank returns the same.
    pub fn sum_f32(&mut self, world: &SimpleCommunicator, buf: &mut [f32]) -> bool {
        if self.refused || !self.ensure_capacity(world, buf.len()) {
            return false;
        }
        let (me, k, len) = (self.me, self.ranks, buf.len());
        let mine = share(len, k, me);
        // Split borrows: the call reads the window, the sum goes across.
        let across = self.across.take();
        let call = self.begin_call();

        // 1. Fill my segment with the slices the others sum (mine I read
        // from `buf` itself).
        call.offer_and_wait(buf, |q| share(len, k, q));

        // 2. My slice of every rank's buffer, summed in rank order, into
        // `buf` (then across hosts) and into my segment for the others.
        call.sum_share(None, buf, mine.clone());
        if let Some(across) = &across {
            sum_politely(across, &mut buf[mine.clone()]);
        }
        // SAFETY: my own slice of my segment, which no other rank reads
        // before `summed`.
        unsafe { call.slice_mut(me, mine.clone()) }.copy_from_slice(&buf[mine]);
        call.raise(me, SUMMED);

        // 3. Every other slice from the rank that summed it.
        call.take_theirs(buf, SUMMED, |q| share(len, k, q));
        call.raise(me, RELEASED);
        self.across = across;
        true
    }

    /// Whether this rank's share of a reduce-scatter can be this host's:
    /// every rank of the job is on this host and the window was not
    /// refused. Every rank answers the same.
    pub fn shards(&self) -> bool {
        self.across.is_none() && !self.refused
    }

    /// Sums `buf` across the host's ranks where only this rank's share
    /// (`share(len, ranks, local rank)`) must be final: steps 1 and 2 of
    /// [`sum_f32`](Self::sum_f32), without the copies of step 3. Returns
    /// false (having done nothing) when there is no window, or ranks on
    /// other hosts. Every rank returns the same.
    pub fn reduce_scatter_f32(&mut self, world: &SimpleCommunicator, buf: &mut [f32]) -> bool {
        self.reduce_scatter(world, None, buf)
    }

    /// [`reduce_scatter_f32`](Self::reduce_scatter_f32) of `input`, only
    /// read, into `out`'s share.
    pub fn reduce_scatter_from(
        &mut self,
        world: &SimpleCommunicator,
        input: &[f32],
        out: &mut [f32],
    ) -> bool {
        assert_eq!(input.len(), out.len());
        self.reduce_scatter(world, Some(input), out)
    }

    /// The reduce-scatter of `input` (or of `out` itself) into `out`.
    fn reduce_scatter(
        &mut self,
        world: &SimpleCommunicator,
        input: Option<&[f32]>,
        out: &mut [f32],
    ) -> bool {
        if !self.shards() || !self.ensure_capacity(world, out.len()) {
            return false;
        }
        let (me, k, len) = (self.me, self.ranks, out.len());
        let call = self.begin_call();
        let mine = share(len, k, me);
        let src: &[f32] = input.unwrap_or(out);
        call.offer_and_wait(src, |q| share(len, k, q));
        call.sum_share(input, out, mine);
        call.raise(me, SUMMED);
        call.raise(me, RELEASED);
        true
    }

    /// Every local rank's share of `buf` (as in
    /// [`reduce_scatter_f32`](Self::reduce_scatter_f32)) from that rank:
    /// each copies its share into its segment, then the others' out of
    /// theirs. False (having done nothing) as `reduce_scatter_f32`.
    pub fn all_gather_f32(&mut self, world: &SimpleCommunicator, buf: &mut [f32]) -> bool {
        if !self.shards() || !self.ensure_capacity(world, buf.len()) {
            return false;
        }
        let (me, k, len) = (self.me, self.ranks, buf.len());
        let call = self.begin_call();
        let mine = share(len, k, me);
        // SAFETY: my segment, which no other rank reads before `ready`.
        unsafe { call.slice_mut(me, mine.clone()) }.copy_from_slice(&buf[mine]);
        call.raise(me, READY);
        call.take_theirs(buf, READY, |q| share(len, k, q));
        call.raise(me, SUMMED);
        call.raise(me, RELEASED);
        true
    }

    /// The next call, once every other rank has finished reading my
    /// segment in the last one (so that I may overwrite it).
    fn begin_call(&mut self) -> Call<'_> {
        self.generation += 1;
        let call = Call {
            window: self.window.as_ref().expect("a window of the capacity"),
            g: self.generation,
            me: self.me,
            ranks: self.ranks,
        };
        for q in (0..self.ranks).filter(|&q| q != self.me) {
            wait_for(call.flag(q, RELEASED), call.g - 1);
        }
        call
    }

    /// A window whose segments hold `floats`, allocated (collectively) the
    /// first time a sum needs more. False when some host's shared-memory
    /// directory lacks the room: then no rank uses a window again.
    fn ensure_capacity(&mut self, world: &SimpleCommunicator, floats: usize) -> bool {
        if self.window.as_ref().is_some_and(|w| w.capacity >= floats) {
            return true;
        }
        // Every rank of the job decides together (a sum's length is the
        // same on every rank, so all of them are here).
        let need = (segment_bytes(floats) * self.ranks) as u64;
        if !room_everywhere(world, need) {
            if world.rank() == 0 {
                eprintln!(
                    "note: no room for a {} MiB shared-memory window per host (see \
                     OMPI_MCA_osc_sm_backing_directory); summing gradients through MPI instead",
                    need >> 20
                );
            }
            self.free();
            self.refused = true;
            return false;
        }
        self.free();
        self.window = Some(self.allocate(floats));
        true
    }

    fn allocate(&self, floats: usize) -> Window {
        let bytes = segment_bytes(floats);
        let handle = self.allocate_window(bytes);
        let bases = (0..self.ranks)
            .map(|q| segment_of(handle, q))
            .collect::<Vec<_>>();
        // A new window: every flag from zero, set before any rank reads one.
        for which in [READY, SUMMED, RELEASED] {
            // SAFETY: my own segment's flags.
            unsafe { &*(bases[self.me].add(which * 64) as *const AtomicU64) }
                .store(0, Ordering::Release);
        }
        self.node.barrier();
        Window {
            handle,
            bases,
            capacity: (bytes - FLAGS_BYTES) / size_of::<f32>(),
        }
    }

    /// `len` u32, zeroed, that every rank of the host maps (one window,
    /// all of it in local rank 0's segment), mapped until
    /// [`free_shared_words`](Self::free_shared_words). `None` on every
    /// rank when the ranks do not share (ranks on other hosts, or the
    /// gradient window was refused) or some rank lacks the room.
    /// Collective over `world`.
    pub fn shared_words(&mut self, world: &SimpleCommunicator, len: usize) -> Option<*mut u32> {
        if !self.shards() {
            return None;
        }
        let bytes = (len * size_of::<u32>()).next_multiple_of(4096);
        if !room_everywhere(world, bytes as u64) {
            return None;
        }
        let handle = self.allocate_window(if self.me == 0 { bytes } else { 0 });
        let base = segment_of(handle, 0);
        if self.me == 0 {
            // SAFETY: local rank 0's own `bytes`, before any rank reads.
            unsafe { std::ptr::write_bytes(base, 0, bytes) };
        }
        self.node.barrier();
        self.kept.push(handle);
        Some(base.cast())
    }

    /// A shared window over the host's ranks with `bytes` in this rank's
    /// segment (collective over the host).
    fn allocate_window(&self, bytes: usize) -> ffi::MPI_Win {
        let mut base: *mut u8 = std::ptr::null_mut();
        // SAFETY: plain MPI calls on a live communicator; MPI fills `base`
        // and `handle`, and aborts the job on failure (its default error
        // handler).
        unsafe {
            let mut handle = ffi::RSMPI_WIN_NULL;
            ffi::MPI_Win_allocate_shared(
                bytes as ffi::MPI_Aint,
                1,
                ffi::RSMPI_INFO_NULL,
                self.node.as_raw(),
                (&mut base as *mut *mut u8).cast(),
                &mut handle,
            );
            handle
        }
    }

    /// Frees the windows of [`shared_words`](Self::shared_words) (collective
    /// over the host's ranks, done with them).
    pub fn free_shared_words(&mut self) {
        if self.kept.is_empty() {
            return;
        }
        self.node.barrier();
        for mut handle in self.kept.drain(..) {
            // SAFETY: a window this process allocated and no longer reads.
            unsafe {
                ffi::MPI_Win_free(&mut handle);
            }
        }
    }

    /// Frees the window (collective over the host's ranks, which have all
    /// finished with it: each is here, past its last sum). The next window
    /// counts generations from zero again.
    pub fn free(&mut self) {
        if let Some(mut w) = self.window.take() {
            self.node.barrier();
            // SAFETY: a window this process allocated and no longer reads.
            unsafe {
                ffi::MPI_Win_free(&mut w.handle);
            }
            self.generation = 0;
        }
    }
}
