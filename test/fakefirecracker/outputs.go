package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// level is a Firecracker log level.
type level int

const (
	levelOff level = iota
	levelError
	levelWarning
	levelInfo
	levelDebug
	levelTrace
)

var levelNames = map[level]string{levelError: "ERROR", levelWarning: "WARN", levelInfo: "INFO", levelDebug: "DEBUG", levelTrace: "TRACE"}

// parseLevel reads the logger's level; Firecracker reads it
// case-insensitively.
func parseLevel(s string) level {
	switch strings.ToLower(s) {
	case "off":
		return levelOff
	case "error":
		return levelError
	case "warning", "warn":
		return levelWarning
	case "debug":
		return levelDebug
	case "trace":
		return levelTrace
	default:
		return levelInfo
	}
}

// logger writes Firecracker-style log lines to PUT /logger's log_path:
//
//	2025-01-02T03:04:05.123456789 [ID:THREAD:LEVEL] message
//
// (":LEVEL" only with show_level). Before a log_path is set it drops them.
type logger struct {
	id        string
	level     level
	showLevel bool
	f         *os.File
}

func (l *logger) setFile(f *os.File) {
	if l.f != nil {
		_ = l.f.Close()
	}
	l.f = f
}

func (l *logger) printf(lv level, thread, format string, args ...any) {
	if l.f == nil || lv > l.level || lv == levelOff {
		return
	}
	tag := l.id + ":" + thread
	if l.showLevel {
		tag += ":" + levelNames[lv]
	}
	line := fmt.Sprintf("%s [%s] %s\n", time.Now().UTC().Format("2006-01-02T15:04:05.000000000"), tag, fmt.Sprintf(format, args...))
	_, _ = l.f.WriteString(line)
}

func (l *logger) close() {
	if l.f != nil {
		_ = l.f.Close()
	}
}

// metricsWriter appends one metrics object per line to metrics_path.
type metricsWriter struct {
	f          *os.File
	emitID     bool
	properties map[string]string
}

// write writes one line, the timestamp first as in Firecracker's output.
func (w *metricsWriter) write(fields map[string]any) error {
	rest, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	line := fmt.Sprintf(`{"utc_timestamp_ms":%d`, time.Now().UnixMilli())
	if len(rest) > 2 {
		line += "," + string(rest[1:])
	} else {
		line += "}"
	}
	_, err = w.f.WriteString(line + "\n")
	return err
}

// stats are the incremental metrics. As in Firecracker (SharedIncMetric),
// each line carries what happened since the previous line: counters are
// reset when written.
type stats struct {
	groups map[string]map[string]uint64
	block  map[string]map[string]uint64 // by drive_id
	net    map[string]map[string]uint64 // by iface_id
	vsock  map[string]uint64
	ticks  uint64
}

var (
	blockFields = []string{"activate_fails", "cfg_fails", "no_avail_buffer", "event_fails", "execute_fails",
		"invalid_reqs_count", "flush_count", "queue_event_count", "rate_limiter_event_count", "update_count",
		"update_fails", "read_bytes", "write_bytes", "read_count", "write_count", "rate_limiter_throttled_events",
		"io_engine_throttled_events", "remaining_reqs_count"}
	netFields = []string{"activate_fails", "cfg_fails", "mac_address_updates", "no_rx_avail_buffer",
		"no_tx_avail_buffer", "event_fails", "rx_queue_event_count", "rx_event_rate_limiter_count",
		"rx_rate_limiter_throttled", "rx_tap_event_count", "rx_bytes_count", "rx_packets_count", "rx_fails",
		"rx_count", "tap_read_fails", "tap_write_fails", "tx_bytes_count", "tx_malformed_frames", "tx_fails",
		"tx_count", "tx_packets_count", "tx_partial_reads", "tx_queue_event_count", "tx_rate_limiter_event_count",
		"tx_rate_limiter_throttled", "tx_spoofed_mac_count", "tx_remaining_reqs_count"}
	vsockFields = []string{"activate_fails", "cfg_fails", "rx_queue_event_fails", "tx_queue_event_fails",
		"ev_queue_event_fails", "muxer_event_fails", "conn_event_fails", "rx_queue_event_count",
		"tx_queue_event_count", "rx_bytes_count", "tx_bytes_count", "rx_packets_count", "tx_packets_count",
		"conns_added", "conns_killed", "conns_removed", "killq_resync", "tx_flush_fails", "tx_write_fails",
		"rx_read_fails"}
	groupFields = map[string][]string{
		"get_api_requests":   {"instance_info_count", "machine_cfg_count", "mmds_count", "vmm_version_count", "hotplug_memory_count"},
		"patch_api_requests": {"drive_count", "drive_fails", "network_count", "network_fails", "machine_cfg_count", "machine_cfg_fails", "mmds_count", "mmds_fails", "hotplug_memory_count", "hotplug_memory_fails"},
		"vcpu":               {"exit_io_in", "exit_io_out", "exit_mmio_read", "exit_mmio_write", "failures", "kvmclock_ctrl_fails"},
		"uart":               {"error_count", "flush_count", "missed_read_count", "missed_write_count", "read_count", "write_count"},
		"logger":             {"missed_metrics_count", "metrics_fails", "missed_log_count", "log_fails"},
		"interrupts":         {"triggers", "config_updates"},
	}
)

func newStats() *stats {
	s := &stats{groups: map[string]map[string]uint64{}, block: map[string]map[string]uint64{}, net: map[string]map[string]uint64{}}
	for g, fields := range groupFields {
		s.groups[g] = zero(fields)
	}
	var put []string
	for _, c := range putCounters {
		put = append(put, c+"_count", c+"_fails")
	}
	s.groups["put_api_requests"] = zero(put)
	s.vsock = zero(vsockFields)
	return s
}

func zero(fields []string) map[string]uint64 {
	m := make(map[string]uint64, len(fields))
	for _, f := range fields {
		m[f] = 0
	}
	return m
}

// count records an API request in the *_api_requests metrics.
func (m *machine) count(method, opID string, status int) {
	var group, name string
	switch method {
	case "GET":
		group = "get_api_requests"
		name = map[string]string{"describeInstance": "instance_info", "getMachineConfiguration": "machine_cfg",
			"getMmds": "mmds", "getFirecrackerVersion": "vmm_version", "getMemoryHotplug": "hotplug_memory"}[opID]
	case "PUT":
		group, name = "put_api_requests", putCounters[opID]
	case "PATCH":
		group = "patch_api_requests"
		name = map[string]string{"patchGuestDriveByID": "drive", "patchGuestNetworkInterfaceByID": "network",
			"patchMachineConfiguration": "machine_cfg", "patchMmds": "mmds", "patchMemoryHotplug": "hotplug_memory"}[opID]
	}
	g := m.stats.groups[group]
	if g == nil || name == "" {
		return
	}
	if _, ok := g[name+"_count"]; ok {
		g[name+"_count"]++
	}
	if _, ok := g[name+"_fails"]; ok && status >= 400 {
		g[name+"_fails"]++
	}
}

// simulateTraffic is one second of a running guest: some disk and network
// I/O and serial output.
func (s *stats) simulateTraffic(drives []*drive, ifaces []*netIface) {
	s.ticks++
	for _, d := range drives {
		b := s.device(s.block, d.ID, blockFields)
		b["read_bytes"] += 8 * 4096
		b["read_count"] += 8
		b["queue_event_count"] += 8
		if d.IsReadOnly == nil || !*d.IsReadOnly {
			b["write_bytes"] += 4096
			b["write_count"]++
			b["flush_count"]++
		}
	}
	for _, n := range ifaces {
		c := s.device(s.net, n.ID, netFields)
		c["rx_bytes_count"] += 3 * 1514
		c["rx_packets_count"] += 3
		c["rx_count"] += 3
		c["tx_bytes_count"] += 2 * 1514
		c["tx_packets_count"] += 2
		c["tx_count"] += 2
	}
	v := s.groups["vcpu"]
	v["exit_io_out"] += 40
	v["exit_io_in"] += 10
	v["exit_mmio_read"] += 25
	v["exit_mmio_write"] += 25
	s.groups["uart"]["write_count"] += 80
	s.groups["interrupts"]["triggers"] += 30
}

func (s *stats) device(set map[string]map[string]uint64, id string, fields []string) map[string]uint64 {
	d := set[id]
	if d == nil {
		d = zero(fields)
		set[id] = d
	}
	return d
}

// flush returns the counters as they are and resets them.
func flush(c map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(c))
	for k, v := range c {
		out[k] = v
		c[k] = 0
	}
	return out
}

func withLatency(counters map[string]uint64, aggs ...string) map[string]any {
	out := make(map[string]any, len(counters)+len(aggs))
	for k, v := range counters {
		out[k] = v
	}
	for _, a := range aggs {
		out[a] = map[string]uint64{"min_us": 0, "max_us": 0, "sum_us": 0}
	}
	return out
}

// metricsLine builds one metrics object in Firecracker's layout: one key
// per component ("vcpu", "uart", ...), per-device objects ("block_<drive_id>",
// "net_<iface_id>") next to their aggregate ("block", "net").
func (m *machine) metricsLine() map[string]any {
	s := m.stats
	out := map[string]any{
		"api_server": map[string]uint64{"process_startup_time_us": 2500, "process_startup_time_cpu_us": 1200},
		"seccomp":    map[string]uint64{"num_faults": 0},
		"vmm":        map[string]uint64{"panic_count": 0},
		"signals": map[string]uint64{"sigbus": 0, "sigsegv": 0, "sigxfsz": 0, "sigxcpu": 0,
			"sigpipe": 0, "sighup": 0, "sigill": 0},
		"deprecated_api": map[string]uint64{"deprecated_http_api_calls": 0, "deprecated_cmd_line_api_calls": 0},
	}
	for g, c := range s.groups {
		if g == "vcpu" {
			out[g] = withLatency(flush(c), "exit_io_in_agg", "exit_io_out_agg", "exit_mmio_read_agg", "exit_mmio_write_agg")
			continue
		}
		out[g] = flush(c)
	}
	for _, d := range m.drives {
		s.device(s.block, d.ID, blockFields)
	}
	for _, n := range m.ifaces {
		s.device(s.net, n.ID, netFields)
	}
	blockAgg, netAgg := zero(blockFields), zero(netFields)
	for _, id := range sortedKeys(s.block) {
		c := flush(s.block[id])
		for k, v := range c {
			blockAgg[k] += v
		}
		out["block_"+id] = withLatency(c, "read_agg", "write_agg")
	}
	for _, id := range sortedKeys(s.net) {
		c := flush(s.net[id])
		for k, v := range c {
			netAgg[k] += v
		}
		out["net_"+id] = withLatency(c, "tap_write_agg")
	}
	out["block"] = withLatency(blockAgg, "read_agg", "write_agg")
	out["net"] = withLatency(netAgg, "tap_write_agg")
	out["vsock"] = flush(s.vsock)
	if m.metrics != nil {
		if m.metrics.emitID {
			out["id"] = m.args.id
		}
		if len(m.metrics.properties) > 0 {
			out["properties"] = m.metrics.properties
		}
	}
	return out
}
