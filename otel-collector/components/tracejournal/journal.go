package tracejournal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// segmentSuffix names journal files; anything else in the directory is left alone.
const segmentSuffix = ".seg"

// recordHeader: 4-byte big-endian payload length, then the payload's CRC-32C. The CRC
// tells a record cut short (a kernel crash between two page writes) or garbage from a
// whole one, so replay stops at the first bad record instead of decoding junk.
const recordHeader = 8

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errJournalFull is returned when a record would take the journal beyond max_bytes.
var errJournalFull = errors.New("trace journal full (max_bytes reached): retry later")

// segment is one journal file written by this process.
type segment struct {
	path      string
	opened    time.Time
	lastWrite time.Time
	size      int64
}

// journal is an append-only store of length-prefixed records in time-sliced segment files.
// One mutex serialises appends: a record is one write(2) of header+payload, so records
// never interleave, and the page cache holds it once write returns (it survives SIGKILL).
type journal struct {
	dir             string
	segmentDuration time.Duration
	retention       time.Duration
	maxBytes        int64
	fsync           bool
	now             func() time.Time

	mu      sync.Mutex
	current *os.File
	open    *segment   // the segment `current` writes to
	closed  []*segment // older segments of this process, oldest first
	bytes   int64      // on disk, in segments of this process
	seq     uint64
}

// newJournal touches no file: `otelcol validate` builds processors too, and must not
// create directories. The directory is made with the first segment.
func newJournal(cfg *Config, dir string) *journal {
	return &journal{
		dir:             dir,
		segmentDuration: cfg.SegmentDuration,
		retention:       cfg.Retention,
		maxBytes:        cfg.MaxBytes,
		fsync:           cfg.Fsync,
		now:             time.Now,
	}
}

// leftovers lists segment files a previous process left, oldest first. Call it before
// the first append: afterwards the directory also holds this process's segments.
func (j *journal) leftovers() ([]string, error) {
	entries, err := os.ReadDir(j.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // first start
	}
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), segmentSuffix) {
			paths = append(paths, filepath.Join(j.dir, e.Name()))
		}
	}
	sort.Strings(paths) // names start with the zero-padded open time
	return paths, nil
}

// append writes one record. On any error the record is not in the journal and the
// caller must refuse the data.
func (j *journal) append(payload []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	now := j.now()
	size := int64(recordHeader + len(payload))
	if j.bytes+size > j.maxBytes {
		return errJournalFull
	}
	if j.current == nil || now.Sub(j.open.opened) >= j.segmentDuration {
		if err := j.rotate(now); err != nil {
			return err
		}
	}
	record := make([]byte, size)
	binary.BigEndian.PutUint32(record[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(record[4:8], crc32.Checksum(payload, crcTable))
	copy(record[recordHeader:], payload)
	written, err := j.current.Write(record)
	j.open.size += int64(written)
	j.bytes += int64(written)
	j.open.lastWrite = now
	if err == nil && j.fsync {
		err = j.current.Sync()
	}
	if err != nil {
		// A part of the record may be on disk: replay stops at it (CRC). Start a fresh
		// segment for the next record so nothing valid ever follows a torn one.
		j.closeCurrent()
		return fmt.Errorf("trace journal write: %w", err)
	}
	return nil
}

// rotate closes the open segment and opens a new one. Called with mu held.
func (j *journal) rotate(now time.Time) error {
	j.closeCurrent()
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return fmt.Errorf("trace journal directory: %w", err)
	}
	j.seq++
	path := filepath.Join(j.dir, fmt.Sprintf("%020d-%06d%s", now.UnixNano(), j.seq, segmentSuffix))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("trace journal segment: %w", err)
	}
	j.current = f
	j.open = &segment{path: path, opened: now, lastWrite: now}
	return nil
}

func (j *journal) closeCurrent() {
	if j.current == nil {
		return
	}
	_ = j.current.Close()
	j.closed = append(j.closed, j.open)
	j.current, j.open = nil, nil
}

// sweep deletes this process's segments whose last write is older than retention (the
// open one too, when idle that long). It returns how many it deleted and the first error.
func (j *journal) sweep() (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	cutoff := j.now().Add(-j.retention)
	if j.open != nil && j.open.lastWrite.Before(cutoff) {
		j.closeCurrent()
	}
	deleted := 0
	var firstErr error
	kept := j.closed[:0]
	for _, s := range j.closed {
		if !s.lastWrite.Before(cutoff) {
			kept = append(kept, s)
			continue
		}
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			if firstErr == nil {
				firstErr = err
			}
			kept = append(kept, s)
			continue
		}
		j.bytes -= s.size
		deleted++
	}
	j.closed = kept
	return deleted, firstErr
}

// onDisk is the size of this process's segments in bytes.
func (j *journal) onDisk() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.bytes
}

// close closes the open segment and keeps every file: what it holds may not have been
// decided yet (tail_sampling does not decide pending traces on Shutdown), so the next
// start replays it.
func (j *journal) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closeCurrent()
}

// readSegment calls each for every whole record of the file at path, in order. It stops
// at the end of the file or at the first cut or corrupt record; torn reports whether it
// met one (the rest of that file is unreadable and skipped).
func readSegment(path string, each func(payload []byte) error) (torn bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return false, err
	}
	left := info.Size()
	r := bufio.NewReaderSize(f, 1<<20)
	header := make([]byte, recordHeader)
	for {
		if _, err := io.ReadFull(r, header); err != nil {
			if errors.Is(err, io.EOF) {
				return false, nil
			}
			return true, nil // io.ErrUnexpectedEOF: header cut short
		}
		length := int64(binary.BigEndian.Uint32(header[0:4]))
		left -= recordHeader + length
		if left < 0 { // a garbage length: never allocate more than the file holds
			return true, nil
		}
		payload := make([]byte, length)
		if _, err := io.ReadFull(r, payload); err != nil {
			return true, nil
		}
		if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(header[4:8]) {
			return true, nil
		}
		if err := each(payload); err != nil {
			return false, err
		}
	}
}
