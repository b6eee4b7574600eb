# The server's log with real processes: a log_file, reopened on SIGHUP the way logrotate's
# rename-then-HUP needs, RPC lines naming their caller and method, and the level changed at
# run time with `trellis-server logger`.
"""log_file, SIGHUP and `logger get|set|reset`.

Each test starts a server launched at INFO with log_file set, so every debug line in the file
comes from a level changed at run time, and nothing of the log goes to the process's stderr.
"""

import os
import re
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import agent_id_for_token, hcl_string, wait_for  # noqa: E402
from test_single_domain import UID_SELECTOR, DeploymentTest  # noqa: E402


def read(path):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def lines_with(text, fragment):
    return [line for line in text.splitlines() if fragment in line]


class LogsTest(DeploymentTest):

    def start_server(self):
        """A server logging to <deployment>/logs/trellis-server.log, launched at INFO."""
        log_dir = self.d.path("logs")
        os.makedirs(log_dir)
        log_file = os.path.join(log_dir, "trellis-server.log")
        server = self.d.server("server", start=False,
                               extra_server_config="  log_file = %s\n" % hcl_string(log_file))
        with open(server.config_path) as f:
            config = f.read()
        self.assertIn('log_level = "DEBUG"', config)
        with open(server.config_path, "w") as f:
            f.write(config.replace('log_level = "DEBUG"', 'log_level = "INFO"'))
        server.start()
        return server, log_file

    def test_rpc_lines_name_their_caller_and_method(self):
        server, log_file = self.start_server()
        self.assertEqual(os.stat(log_file).st_mode & 0o777, 0o600)
        token = server.generate_token()
        agent = self.d.agent(server, join_token=token)
        agent_id = agent_id_for_token(token)
        server.create_entry(agent_id, "spiffe://example.org/logs/app", [UID_SELECTOR])
        log = read(log_file)

        attested = lines_with(log, "Agent attested")
        self.assertEqual(len(attested), 1, log)
        self.assertIn(" caller_id=%s" % agent_id, attested[0])
        self.assertIn(" method=/trellis.server.v1.Agent/AttestAgent", attested[0])

        created = lines_with(log, "Entry created")
        self.assertEqual(len(created), 1, log)
        self.assertIn(" caller_uid=%d" % os.getuid(), created[0])
        self.assertIn(" method=/trellis.server.v1.Admin/BatchCreateEntry", created[0])

        # The log went to the file, not to the process's stderr.
        self.assertIn("Server started", log)
        self.assertNotIn("Server started", server.process.log())
        self.assertTrue(agent.process.running())

    def test_sighup_after_a_rename_starts_a_new_file(self):
        server, log_file = self.start_server()
        rotated = log_file + ".1"
        os.rename(log_file, rotated)
        server.create_entry("spiffe://example.org/spire/agent/x", "spiffe://example.org/before",
                            [UID_SELECTOR])
        # Until the signal, lines follow the renamed file.
        self.assertTrue(lines_with(read(rotated), "spiffe_id=spiffe://example.org/before"))
        self.assertFalse(os.path.exists(log_file))

        server.process.popen.send_signal(signal.SIGHUP)
        wait_for(lambda: "Log file reopened" in read(log_file), what="the log file reopened")
        self.assertTrue(server.process.running())
        self.assertEqual(os.stat(log_file).st_mode & 0o777, 0o600)
        server.create_entry("spiffe://example.org/spire/agent/x", "spiffe://example.org/after",
                            [UID_SELECTOR])
        new = read(log_file)
        old = read(rotated)
        after = lines_with(new, "spiffe_id=spiffe://example.org/after")
        self.assertEqual(len(after), 1, new)
        self.assertIn(" method=/trellis.server.v1.Admin/BatchCreateEntry", after[0])
        self.assertNotIn("spiffe://example.org/after", old)
        self.assertNotIn("spiffe://example.org/before", new)
        self.assertTrue(server.cli("healthcheck").ok)

    def test_logger_set_debug_shows_debug_lines_and_reset_hides_them(self):
        server, log_file = self.start_server()
        got = server.cli("logger", "get", "-output", "json", check=True).json()
        self.assertEqual(got, {"current_level": "INFO", "launch_level": "INFO"})
        server.cli("entry", "show", check=True)
        self.assertFalse(lines_with(read(log_file), "Entries listed"))

        out = server.cli("logger", "set", "-level", "debug", check=True).stdout
        self.assertEqual(out, "Logger Level : debug\nLaunch Level : info\n")
        server.cli("entry", "show", check=True)
        listed = lines_with(read(log_file), "Entries listed")
        self.assertEqual(len(listed), 1)
        self.assertRegex(listed[0], r" debug Entries listed ")
        self.assertIn(" method=/trellis.server.v1.Admin/ListEntries", listed[0])

        out = server.cli("logger", "reset", check=True).stdout
        self.assertEqual(out, "Logger Level : info\nLaunch Level : info\n")
        offset = len(read(log_file))
        server.cli("entry", "show", check=True)
        server.create_entry("spiffe://example.org/spire/agent/x", "spiffe://example.org/quiet",
                            [UID_SELECTOR])
        since = read(log_file)[offset:]
        # The entry creation is logged (info), the listing (debug) no more.
        self.assertTrue(lines_with(since, "Entry created"), since)
        self.assertFalse(re.search(r"Z debug ", since), since)
        self.assertEqual(len(lines_with(read(log_file), "Entries listed")), 1)


if __name__ == "__main__":
    unittest.main()
