#!/usr/bin/env python3
"""Drives lanchat's IRC door with the `irc` package from PyPI (a client library nobody
here wrote), and the native port with a raw TCP socket.

    python3 tests/irc/suite.py GROUP --irc PORT --native PORT

GROUP is one of the functions named in GROUPS below; tests/irc.rs starts a fresh server
for each group (auth "open", or "password" for the password group) and runs this.
Exit status 0 = every check passed; the first failed check raises with a transcript.
"""

import argparse
import socket
import sys
import time

import irc.client

PATIENCE = 10.0


class Check(Exception):
    pass


class Client:
    """One IRC connection made by the library, with its events kept for expect()."""

    def __init__(self, reactor, nick, port, password=None, username=None, realname=None):
        self.reactor = reactor
        self.events = []
        self.seen = []
        self.nick = nick
        self.conn = reactor.server()
        self.conn.buffer_class.errors = "replace"
        self.conn.connect(
            "127.0.0.1",
            port,
            nick,
            password=password,
            username=username or nick,
            ircname=realname or f"{nick} realname",
        )
        CLIENTS[id(self.conn)] = self

    def pump(self, seconds=0.05):
        end = time.time() + seconds
        while time.time() < end:
            self.reactor.process_once(0.02)

    def expect(self, etype, pred=lambda e: True, what=""):
        """Waits for an event of type `etype` matching `pred`; removes and returns it."""
        deadline = time.time() + PATIENCE
        while True:
            for i, e in enumerate(self.events):
                if e.type == etype and pred(e):
                    del self.events[i]
                    return e
            if time.time() > deadline:
                raise Check(
                    f"{self.nick}: no {etype} {what} in time; saw:\n  "
                    + "\n  ".join(s for s in self.seen if not s.startswith("all_raw"))
                )
            self.reactor.process_once(0.05)

    def expect_none(self, etype, pred=lambda e: True, wait=0.5):
        self.pump(wait)
        found = [e for e in self.events if e.type == etype and pred(e)]
        if found:
            raise Check(f"{self.nick}: unexpected {etype}: {found[0].arguments}")

    def clear(self, wait=0.3):
        self.pump(wait)
        self.events.clear()

    def raw(self, line):
        self.conn.send_raw(line)


CLIENTS = {}


def on_event(conn, event):
    client = CLIENTS.get(id(conn))
    if client is not None:
        client.events.append(event)
        client.seen.append(f"{event.type} {event.source} {event.target} {event.arguments}")


def new_reactor():
    reactor = irc.client.Reactor()
    reactor.add_global_handler("all_events", on_event, -10)
    return reactor


class Native:
    """A native lanchat client over raw TCP (PROTOCOL.md)."""

    def __init__(self, port, name, password=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
        self.buf = b""
        self.seen = []
        self.name = name
        self.send("protocol lanchat/1")  # tagged lines, not the prose for people
        self.line_with("ASK username")
        self.send(name)
        if password is not None:
            self.line_with("ASK password")
            self.send(password)
        self.line_with(f"WELCOME {name}")

    def send(self, line):
        self.sock.sendall(line.encode() + b"\n")

    def line_with(self, needle):
        deadline = time.time() + PATIENCE
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                text = line.decode()
                self.seen.append(text)
                if needle in text:
                    return text
            if time.time() > deadline:
                raise Check(f"native {self.name}: no line with {needle!r}; saw:\n  " + "\n  ".join(self.seen[-30:]))
            self.sock.settimeout(max(0.01, deadline - time.time()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise Check(f"native {self.name}: closed while waiting for {needle!r}")
            self.buf += data


def args_of(e):
    return list(e.arguments)


def check(cond, what):
    if not cond:
        raise Check(what)


# ----- groups -----


def registration(opts):
    r = new_reactor()
    a = Client(r, "alice", opts.irc, username="ali", realname="Alice Liddell")
    w = a.expect("welcome")
    check(w.target == "alice", f"001 target {w.target}")
    for t in ["yourhost", "created", "myinfo"]:
        a.expect(t)
    isupport = " ".join(a.expect("featurelist").arguments)
    for token in ["PREFIX=(ov)@+", "CHANTYPES=#", "CASEMAPPING=ascii", "NICKLEN=32", "CHANNELLEN=33", "NETWORK="]:
        check(token in isupport, f"005 lacks {token}: {isupport}")
    a.expect("luserclient")
    a.expect("nomotd")
    a.expect("join", lambda e: e.target == "#lanchat")
    a.expect("endofnames", lambda e: e.arguments[0] == "#lanchat")
    # Order: 001 came first, and 422 before the lobby's JOIN.
    order = [s.split(" ")[0] for s in a.seen if not s.startswith("all_raw")]
    check(order[0] == "welcome", f"first event {order[0]}")
    check(order.index("nomotd") < order.index("join"), f"order {order}")

    # 433: the nick in use, including by a native user and in another case.
    b = Client(r, "ALICE", opts.irc)
    b.expect("nicknameinuse")
    b.conn.nick("bob")
    b.expect("welcome", lambda e: e.target == "bob")
    n = Native(opts.native, "nate")
    c = Client(r, "nate", opts.irc)
    c.expect("nicknameinuse")
    # 432 for a name lanchat cannot have; 431 for none.
    c.raw("NICK b@d")
    c.expect("erroneusnickname")
    c.raw("NICK")
    c.expect("nonicknamegiven")
    c.conn.nick("carol")
    c.expect("welcome", lambda e: e.target == "carol")
    # A nick equal to an online one but for case is taken until that user has gone.
    v = Native(opts.native, "vic")
    d = Client(r, "VIC", opts.irc)
    d.expect("nicknameinuse")
    v.send("logout")
    v.line_with("BYE logout")
    d.conn.nick("VIC")
    d.expect("welcome", lambda e: e.target == "VIC")
    d.conn.quit("bye")
    # Registered: PASS/USER again is 462; unknown command 421.
    c.raw("USER x 0 * :again")
    c.expect("alreadyregistered")
    c.raw("FROBNICATE now")
    c.expect("unknowncommand", lambda e: e.arguments[0] == "FROBNICATE")
    # Open mode allows nick changes: others see NICK, natives see logout+login.
    c.conn.nick("carol2")
    c.expect("nick", lambda e: e.target == "carol2")
    a.expect("nick", lambda e: e.source.nick == "carol" and e.target == "carol2")
    n.line_with("PRESENCE carol logout")
    n.line_with("PRESENCE carol2 login")
    c.raw("PRIVMSG alice :from the new nick")
    a.expect("privmsg", lambda e: e.source.nick == "carol2")

    # Raw registration details: 451 before registering, USER with too few parameters or an
    # empty real name is 461, PING works before registration, CAP holds registration.
    s = socket.create_connection(("127.0.0.1", opts.irc), timeout=PATIENCE)
    s.sendall(b"PRIVMSG alice :early\r\nUSER u 0 *\r\nUSER u 0 * :\r\nPING early\r\nCAP LS 302\r\nNICK dave\r\nUSER d 0 * :Dave\r\n")
    got = read_for(s, 0.7)
    check(" 451 * " in got, f"no 451: {got}")
    check(got.count(" 461 * USER ") == 2, f"no 461s: {got}")
    check("PONG " in got and "early" in got, f"no PONG: {got}")
    check(" CAP * LS :" in got, f"no CAP LS: {got}")
    check(" 001 " not in got, f"registered during CAP: {got}")
    s.sendall(b"CAP REQ :server-time bogus-cap\r\nCAP REQ :server-time\r\nCAP LIST\r\nCAP END\r\n")
    got = read_for(s, 0.7)
    check("CAP * NAK :server-time bogus-cap" in got, f"no NAK: {got}")
    check("CAP * ACK :server-time" in got and "CAP * LIST :server-time" in got, f"caps: {got}")
    check(" 001 dave " in got, f"no 001 after CAP END: {got}")
    # Long lines are cut at 512 bytes on a character boundary; bad UTF-8 is accepted.
    s.sendall(b"PRIVMSG alice :" + ("\u00e9" * 400).encode() + b"\r\nPRIVMSG alice :end\r\n")
    # What arrives may be split in several lines (alice's lines carry dave's mask too).
    got = ""
    while True:
        e = a.expect("privmsg", lambda e: e.source.nick == "dave")
        if e.arguments[0] == "end":
            break
        got += e.arguments[0]
    body = len("PRIVMSG alice :".encode()) + len(got.encode())
    check(490 < body <= 510 and set(got) == {"\u00e9"}, f"cut to {body}")
    s.sendall(b"PRIVMSG alice :caf\xe9 latin-1\r\n")
    e = a.expect("privmsg", lambda e: e.source.nick == "dave")
    check(e.arguments[0] == "caf\ufffd latin-1", f"lossy: {e.arguments}")
    # QUIT: ERROR, then the connection closes; the others see QUIT with the text.
    s.sendall(b"QUIT :see you\r\n")
    got = read_until_closed(s)
    check("ERROR :" in got, f"no ERROR: {got}")
    a.expect("quit", lambda e: e.source.nick == "dave" and "see you" in e.arguments[0])
    n.line_with("PRESENCE dave logout")


def read_for(s, seconds):
    s.settimeout(0.1)
    out = b""
    end = time.time() + seconds
    while time.time() < end:
        try:
            d = s.recv(65536)
            if not d:
                break
            out += d
        except socket.timeout:
            pass
    return out.decode(errors="replace")


def read_until_closed(s, keep_alive=None):
    """Reads until the server closes `s`, pumping `keep_alive`'s events meanwhile."""
    s.settimeout(0.05)
    out = b""
    deadline = time.time() + PATIENCE
    while time.time() < deadline:
        try:
            d = s.recv(65536)
        except socket.timeout:
            if keep_alive is not None:
                keep_alive.pump(0.05)
            continue
        if not d:
            return out.decode(errors="replace")
        out += d
    raise Check(f"connection not closed; got: {out!r}")


def messages(opts):
    r = new_reactor()
    a = Client(r, "alice", opts.irc)
    b = Client(r, "bob", opts.irc)
    a.expect("welcome")
    b.expect("welcome")
    a.clear()
    b.clear()
    a.conn.privmsg("bob", "hello bob")
    e = b.expect("privmsg", lambda e: e.arguments == ["hello bob"])
    check(e.source.nick == "alice" and e.target == "bob", f"{e.source} {e.target}")
    # No reply to a delivered message.
    a.expect_none("privnotice")
    a.conn.notice("bob", "a notice")
    b.expect("privnotice", lambda e: e.arguments == ["a notice"])
    # Case-insensitive nicks.
    a.conn.privmsg("BOB", "shouting")
    b.expect("privmsg", lambda e: e.arguments == ["shouting"])
    # CTCP ACTION (/me) survives the hub's escaping.
    a.conn.action("bob", "waves")
    b.expect("action", lambda e: e.arguments == ["waves"])
    # Errors: 401, 411, 412; NOTICE never gets an error.
    a.conn.privmsg("nobody", "hi")
    a.expect("nosuchnick", lambda e: e.arguments[0] == "nobody")
    a.raw("PRIVMSG")
    a.expect("norecipient")
    a.raw("PRIVMSG bob")
    a.expect("notexttosend")
    a.raw("PRIVMSG bob :")
    a.expect("notexttosend")
    a.conn.notice("nobody", "hi")
    a.conn.notice("#nochan", "hi")
    a.expect_none("nosuchnick")
    a.expect_none("nosuchchannel")
    # Channels: 403 for none, 404 when not joined.
    a.conn.privmsg("#nochan", "hi")
    a.expect("nosuchchannel", lambda e: e.arguments[0] == "#nochan")
    b.conn.join("#room")
    b.expect("join", lambda e: e.target == "#room")
    a.conn.privmsg("#room", "let me in")
    a.expect("cannotsendtochan", lambda e: e.arguments[0] == "#room")
    a.conn.join("#room")
    a.expect("endofnames", lambda e: e.arguments[0] == "#room")
    b.expect("join", lambda e: e.source.nick == "alice" and e.target == "#room")
    a.conn.privmsg("#room", "hello room")
    e = b.expect("pubmsg", lambda e: e.arguments == ["hello room"])
    check(e.target == "#room" and e.source.nick == "alice", f"{e.target}")
    a.expect_none("pubmsg")
    a.conn.notice("#room", "room notice")
    b.expect("pubnotice", lambda e: e.arguments == ["room notice"])
    # Several targets at once.
    a.conn.privmsg("bob,#room", "twice")
    b.expect("privmsg", lambda e: e.arguments == ["twice"])
    b.expect("pubmsg", lambda e: e.arguments == ["twice"])
    # The lobby is the broadcast.
    c = Client(r, "carol", opts.irc)
    c.expect("welcome")
    a.conn.privmsg("#lanchat", "to everyone")
    b.expect("pubmsg", lambda e: e.target == "#lanchat" and e.arguments == ["to everyone"])
    c.expect("pubmsg", lambda e: e.target == "#lanchat" and e.arguments == ["to everyone"])
    # AWAY: 306/305, and 301 to senders while away.
    b.conn.send_raw("AWAY :out for lunch")
    b.expect("nowaway")
    a.conn.privmsg("bob", "still there?")
    e = a.expect("away")
    check(e.arguments == ["bob", "out for lunch"], f"301 {e.arguments}")
    b.expect("privmsg", lambda e: e.arguments == ["still there?"])
    b.conn.send_raw("AWAY")
    b.expect("unaway")
    a.conn.privmsg("bob", "back?")
    a.expect_none("away")


def channels(opts):
    r = new_reactor()
    a = Client(r, "alice", opts.irc)
    b = Client(r, "bob", opts.irc)
    a.expect("welcome")
    b.expect("welcome")
    a.conn.join("#one,#two")
    for chan in ["#one", "#two"]:
        a.expect("join", lambda e: e.target == chan)
        e = a.expect("namreply", lambda e: e.arguments[1] == chan)
        check(e.arguments == ["=", chan, "@alice"], f"first joiner is op: {e.arguments}")
        a.expect("endofnames", lambda e: e.arguments[0] == chan)
    b.conn.join("#ONE")
    e = b.expect("namreply", lambda e: e.arguments[1] == "#one")
    check(sorted(e.arguments[2].split()) == ["@alice", "bob"], f"names {e.arguments}")
    a.expect("join", lambda e: e.source.nick == "bob" and e.target == "#one")
    # Joining a channel again repeats the burst to the joiner only.
    b.clear()
    b.conn.join("#one")
    b.expect("join", lambda e: e.source.nick == "bob" and e.target == "#one")
    b.expect("endofnames", lambda e: e.arguments[0] == "#one")
    a.expect_none("join", lambda e: e.source.nick == "bob" and e.target == "#one", wait=0.3)
    # NAMES with several channels ends with one 366 naming them all.
    a.conn.names(["#one", "#two"])
    a.expect("namreply", lambda e: e.arguments[1] == "#one")
    a.expect("namreply", lambda e: e.arguments[1] == "#two")
    a.expect("endofnames", lambda e: e.arguments[0] == "#one,#two")
    a.raw("NAMES #nothing")
    a.expect("endofnames", lambda e: e.arguments[0] == "#nothing")
    # MODE and TOPIC as clients send them on joining.
    b.conn.mode("#one", "")
    e = b.expect("channelmodeis")
    check(e.arguments[:2] == ["#one", "+nt"], f"324 {e.arguments}")
    b.expect("channelcreate")
    b.raw("MODE #one b")
    b.expect("endofbanlist")
    b.raw("MODE bob")
    b.expect("umodeis")
    b.raw("MODE alice")
    b.expect("usersdontmatch")
    b.raw("TOPIC #one")
    b.expect("notopic")
    b.raw("TOPIC #one :not allowed")
    b.expect("chanoprivsneeded")
    a.raw("TOPIC #one :Room one")
    a.expect("topic", lambda e: e.arguments == ["Room one"])
    b.expect("topic", lambda e: e.arguments == ["Room one"])
    a.raw("MODE #one +v bob")
    b.expect("mode", lambda e: e.arguments == ["+v", "bob"])
    # +o on nobody online is 401; on someone online but not in the channel, 441.
    c = Client(r, "carol", opts.irc)
    c.expect("welcome")
    a.raw("MODE #one +o ghost")
    a.expect("nosuchnick", lambda e: e.arguments[0] == "ghost")
    a.raw("MODE #one +o carol")
    a.expect("usernotinchannel", lambda e: e.arguments[:2] == ["carol", "#one"])
    # -t opens the topic to every member, and 324 says so; +t closes it again.
    a.raw("MODE #one -t")
    b.expect("mode", lambda e: e.target == "#one" and e.arguments == ["-t"])
    b.conn.mode("#one", "")
    e = b.expect("channelmodeis")
    check(e.arguments[:2] == ["#one", "+n"], f"324 after -t {e.arguments}")
    b.raw("TOPIC #one :bob's topic")
    a.expect("topic", lambda e: e.source.nick == "bob" and e.arguments == ["bob's topic"])
    a.raw("MODE #one +t")
    b.expect("mode", lambda e: e.arguments == ["+t"])
    b.raw("TOPIC #one :not allowed")
    b.expect("chanoprivsneeded")
    a.raw("TOPIC #one :Room one")
    b.expect("topic", lambda e: e.arguments == ["Room one"])
    # LIST with masks lists only the matching channels.
    b.clear()
    b.raw("LIST *ne,#nothing")
    e = b.expect("list")
    check(e.arguments[0] == "#one", f"LIST *ne {e.arguments}")
    b.expect("listend")
    # WHO takes nick masks (any case).
    b.raw("WHO ALI*")
    e = b.expect("whoreply")
    check(e.arguments[4] == "alice", f"WHO ALI* {e.arguments}")
    b.expect("endofwho", lambda e: e.arguments[0] == "ALI*")
    a.conn.who("#one")
    rows = []
    while True:
        e = a.expect("whoreply")
        rows.append(e.arguments)
        if len(rows) == 2:
            break
    a.expect("endofwho", lambda e: e.arguments[0] == "#one")
    flags = sorted(row[5] + row[4] for row in rows)
    check(flags == ["H+bob", "H@alice"], f"WHO flags {rows}")
    # PART: 442 when not in it, 403 when it does not exist; others see PART.
    b.conn.part(["#two"])
    b.expect("notonchannel", lambda e: e.arguments[0] == "#two")
    b.conn.part(["#zzz"])
    b.expect("nosuchchannel")
    b.conn.part(["#one"], "byebye")
    b.expect("part", lambda e: e.target == "#one")
    a.expect("part", lambda e: e.source.nick == "bob" and e.arguments == ["byebye"])
    # JOIN 0 leaves everything.
    a.conn.join("0")
    for chan in ["#one", "#two", "#lanchat"]:
        a.expect("part", lambda e: e.target == chan)
    a.raw("LIST")
    a.expect("listend")
    a.conn.join("#lanchat")
    a.expect("join", lambda e: e.target == "#lanchat")
    a.raw("JOIN")
    a.expect("needmoreparams")


def queries(opts):
    r = new_reactor()
    a = Client(r, "alice", opts.irc, username="ali", realname="Alice Liddell")
    b = Client(r, "bob", opts.irc)
    a.expect("welcome")
    b.expect("welcome")
    n = Native(opts.native, "nate")
    b.expect("join", lambda e: e.source.nick == "nate")
    # Forget the registration burst: its LUSERS and 422 are not the answers below.
    b.clear()
    n.send("intro Native intro")
    n.line_with("OK intro")
    b.conn.whois(["alice"])
    e = b.expect("whoisuser")
    check(e.arguments == ["alice", "ali", "127.0.0.1", "*", "Alice Liddell"], f"311 {e.arguments}")
    b.expect("whoischannels", lambda e: "#lanchat" in e.arguments[1])
    b.expect("whoisserver")
    b.expect("whoisidle")
    b.expect("endofwhois")
    b.conn.whois(["nate"])
    e = b.expect("whoisuser")
    check(e.arguments[0] == "nate" and e.arguments[4] == "Native intro", f"311 native {e.arguments}")
    b.expect("endofwhois")
    b.conn.whois(["ghost"])
    b.expect("nosuchnick")
    b.expect("endofwhois", lambda e: e.arguments[0] == "ghost")
    n.send("away")
    n.line_with("OK status")
    b.conn.whois(["nate"])
    b.expect("away", lambda e: e.arguments[0] == "nate")
    b.expect("endofwhois")
    b.conn.ison(["alice", "ghost", "NATE"])
    e = b.expect("ison")
    check(sorted(e.arguments[0].split()) == ["alice", "nate"], f"303 {e.arguments}")
    b.conn.userhost(["alice", "nate"])
    e = b.expect("userhost")
    check(sorted(e.arguments[0].split()) == ["alice=+ali@127.0.0.1", "nate=-nate@lanchat"], f"302 {e.arguments}")
    b.conn.who("#lanchat")
    names = set()
    while len(names) < 3:
        names.add(b.expect("whoreply").arguments[4])
    b.expect("endofwho")
    check(names == {"alice", "bob", "nate"}, f"who {names}")
    b.conn.lusers()
    e = b.expect("luserclient")
    check("There are 3 users" in e.arguments[0], f"251 {e.arguments}")
    b.expect("luserme", lambda e: "I have 3 clients" in e.arguments[0])
    b.expect("n_local", lambda e: e.arguments[:2] == ["3", "3"])
    b.conn.motd()
    b.expect("nomotd")
    b.conn.ping("token123")
    e = b.expect("pong")
    check(e.arguments == ["token123"], f"PONG {e.arguments}")
    b.raw("PING")
    b.expect("needmoreparams", lambda e: e.arguments[0] == "PING")


def bridge(opts):
    """Native <-> IRC: messages, broadcasts, groups, presence, away, blocks, sessions, mail."""
    r = new_reactor()
    n = Native(opts.native, "nate")
    a = Client(r, "alice", opts.irc)
    a.expect("welcome")
    n.line_with("PRESENCE alice login")
    # Native user in the lobby's NAMES; later logins as JOIN.
    e = a.expect("namreply", lambda e: e.arguments[1] == "#lanchat")
    check("nate" in e.arguments[2].split(), f"lobby names {e.arguments}")
    m = Native(opts.native, "mia")
    a.expect("join", lambda e: e.source.nick == "mia" and e.target == "#lanchat")
    # The lobby's NAMES lists everyone online, in name order.
    a.conn.names(["#lanchat"])
    e = a.expect("namreply", lambda e: e.arguments[1] == "#lanchat")
    check(e.arguments[2].split() == ["alice", "mia", "nate"], f"lobby names in order {e.arguments}")
    # Private messages both ways.
    n.send("message alice hello from native")
    n.line_with("OK sent")
    a.expect("privmsg", lambda e: e.source.nick == "nate" and e.arguments == ["hello from native"])
    a.conn.privmsg("nate", "hello from irc")
    n.line_with("MSG alice hello from irc")
    # Broadcasts both ways through the lobby.
    n.send("broadcast hi all")
    a.expect("pubmsg", lambda e: e.target == "#lanchat" and e.arguments == ["hi all"])
    a.conn.privmsg("#lanchat", "irc says hi")
    n.line_with("BCAST alice irc says hi")
    # Groups are channels, both ways.
    n.send("group create cs101")
    n.line_with("OK group-created")
    a.conn.join("#cs101")
    e = a.expect("namreply", lambda e: e.arguments[1] == "#cs101")
    check(sorted(e.arguments[2].split()) == ["alice", "nate"], f"group names {e.arguments}")
    n.send("group send cs101 native to group")
    a.expect("pubmsg", lambda e: e.target == "#cs101" and e.arguments == ["native to group"])
    a.conn.privmsg("#cs101", "irc to group")
    n.line_with("GROUP cs101 alice irc to group")
    a.conn.join("#ircroom")
    a.expect("join", lambda e: e.target == "#ircroom")
    n.send("group list")
    n.line_with("ENTRY groups ircroom")
    # AWAY is busy, and back.
    a.conn.send_raw("AWAY :coffee")
    a.expect("nowaway")
    n.line_with("PRESENCE alice busy")
    n.send("message alice ping?")
    n.line_with("INFO busy")
    a.conn.send_raw("AWAY")
    n.line_with("PRESENCE alice available")
    # Blacklists: a native block stops IRC messages (716), and the reverse.
    n.send("block alice")
    n.line_with("OK blocked")
    a.conn.privmsg("nate", "let me talk")
    a.expect("716", lambda e: e.arguments[0] == "nate")
    # Who blocks you, or is invisible, is not in your NAMES; back when that ends.
    def lobby_names():
        a.clear()
        a.conn.names(["#lanchat"])
        return a.expect("namreply", lambda e: e.arguments[1] == "#lanchat").arguments[2].split()
    check("nate" not in lobby_names(), "a blocker is hidden from NAMES")
    n.send("unblock alice")
    n.line_with("OK unblocked")
    check("nate" in lobby_names(), "unblocked: in NAMES again")
    n.send("status invisible")
    n.line_with("OK status")
    check("nate" not in lobby_names(), "invisible: hidden from NAMES")
    n.send("status available")
    n.line_with("OK status")
    check("nate" in lobby_names(), "visible again: in NAMES")
    a.conn.privmsg("*lanchat", "block mia")
    a.expect("privnotice", lambda e: "mia is blocked" in e.arguments[0])
    m.send("message alice hi")
    m.line_with("ERR blocked")
    # Chat sessions: requests as notices, answered through *lanchat, lines as PRIVMSGs.
    n.send("chat alice")
    n.line_with("OK chat-requested")
    a.expect("privnotice", lambda e: "wants to chat" in e.arguments[0] and "/msg *lanchat accept" in e.arguments[0])
    a.conn.privmsg("*lanchat", "accept")
    n.line_with("SESSION started")
    n.send("how are you")
    a.expect("privmsg", lambda e: e.source.nick == "nate" and e.arguments == ["how are you"])
    a.conn.privmsg("nate", "fine thanks")
    n.line_with("TALK ")
    n.send("end")
    n.line_with("SESSION ended")
    a.expect("privnotice", lambda e: "Chat ended" in e.arguments[0])
    # Presence: a native logout is a QUIT.
    m.send("logout")
    a.expect("quit", lambda e: e.source.nick == "mia")
    a.conn.names(["#lanchat"])
    e = a.expect("namreply", lambda e: e.arguments[1] == "#lanchat")
    check(e.arguments[2].split() == ["alice", "nate"], f"lobby names after a logout {e.arguments}")
    # A membership made natively (here through *lanchat) lasts across logins; a JOIN lasts
    # as long as the connection, as IRC users expect.
    n.send("group create cs102")
    n.line_with("OK group-created")
    a.conn.privmsg("*lanchat", "group join cs102")
    a.expect("privnotice", lambda e: "joined group cs102" in e.arguments[0])
    # Offline mail: delivered after the welcome, with its time.
    a.conn.quit("brb")
    n.line_with("PRESENCE alice logout")
    n.send("message alice while you were out")
    n.line_with("OK queued")
    n.send("group members cs101")
    n.line_with("LIST members 1 ")
    n.send("group send cs102 group while out")
    n.line_with("OK group-sent")
    r2 = new_reactor()
    a2 = Client(r2, "alice", opts.irc)
    a2.expect("welcome")
    e = a2.expect("privmsg", lambda e: e.source.nick == "nate" and "while you were out" in e.arguments[0])
    check(e.arguments[0].startswith("[") and "UTC]" in e.arguments[0], f"time prefix {e.arguments}")
    e = a2.expect("privmsg", lambda e: "group while out" in e.arguments[0])
    check("#cs102]" in e.arguments[0], f"group mail {e.arguments}")
    order = [s.split(" ")[0] for s in a2.seen if not s.startswith("all_raw")]
    check(order.index("welcome") < order.index("privmsg"), f"mail after welcome: {order}")
    # Lasting memberships are joined again at login; the channel left at QUIT is not.
    a2.expect("join", lambda e: e.target == "#cs102")
    a2.expect_none("join", lambda e: e.target == "#cs101", wait=0.3)
    # An offline nick: the message waits, and the sender is told.
    a2.conn.privmsg("mia", "are you there")
    a2.expect("privnotice", lambda e: "not online" in e.arguments[0])


def password(opts):
    """auth = "password": PASS is the user's own password; failures count toward lockout."""
    r = new_reactor()
    a = Client(r, "alice", opts.irc, password="pw-alice")
    a.expect("welcome")
    # No PASS, a wrong one: 464, ERROR, closed.
    for pw in [None, "wrong"]:
        b = Client(r, "bob", opts.irc, password=pw)
        b.expect("passwdmismatch")
        b.expect("error")
        b.expect("disconnect")
    # Nick changes are refused in this mode.
    a.conn.nick("alice2")
    a.expect("447")
    # The nick of an online user: 433 only after the right password.
    c = Client(r, "alice", opts.irc, password="pw-alice")
    c.expect("nicknameinuse")
    # Lockout: 3 failures (one above) and the name is blocked, even with the right password.
    for _ in range(2):
        b = Client(r, "bob", opts.irc, password="nope")
        b.expect("error")
        b.expect("disconnect")
    b = Client(r, "bob", opts.irc, password="pw-bob")
    e = b.expect("error")
    check("blocked" in e.target or "blocked" in " ".join(e.arguments), f"lockout {e.target} {e.arguments}")
    b.expect("disconnect")
    # Native users log in as usual beside IRC ones.
    n = Native(opts.native, "carol", "pw-carol")
    a.expect("join", lambda e: e.source.nick == "carol")


def timeouts(opts):
    """heartbeat_timeout_secs = 1, login_timeout_secs = 2 on this server."""
    r = new_reactor()
    a = Client(r, "alice", opts.irc)
    a.expect("welcome")
    # The library answers the server's PINGs, so alice stays.
    s = socket.create_connection(("127.0.0.1", opts.irc), timeout=PATIENCE)
    s.sendall(b"NICK mute\r\nUSER m 0 * :Mute\r\n")
    a.expect("join", lambda e: e.source.nick == "mute")
    # mute never answers: PING after 1 s of silence, ERROR after 2 s (alice keeps
    # answering hers meanwhile).
    got = read_until_closed(s, a)
    check("PING " in got and "ERROR :Closing Link: mute (Ping timeout" in got, f"mute got: {got}")
    a.expect("quit", lambda e: e.source.nick == "mute" and "Ping timeout" in e.arguments[0])
    # A connection that never registers is closed after login_timeout_secs.
    s = socket.create_connection(("127.0.0.1", opts.irc), timeout=PATIENCE)
    s.sendall(b"NICK slow\r\n")
    got = read_until_closed(s, a)
    check("ERROR :" in got and "timed out" in got, f"slow got: {got}")
    a.pump(0.5)
    a.conn.privmsg("alice", "still here")
    a.expect("privmsg", lambda e: e.arguments == ["still here"])


def kick_invite(opts):
    """KICK and INVITE: every error numeric, IRC targets and native targets."""
    r = new_reactor()
    a = Client(r, "alice", opts.irc)
    b = Client(r, "bob", opts.irc)
    c = Client(r, "carol", opts.irc)
    n = Native(opts.native, "nate")
    for x in (a, b, c):
        x.expect("welcome")
    # The TARGMAX token says KICK takes several nicks.
    e = a.expect("featurelist", lambda e: any(t.startswith("TARGMAX=") for t in e.arguments))
    check(any("KICK:4" in t for t in e.arguments), f"TARGMAX {e.arguments}")
    a.conn.join("#room")
    a.expect("endofnames", lambda e: e.arguments[0] == "#room")
    b.conn.join("#room")
    b.expect("endofnames", lambda e: e.arguments[0] == "#room")
    a.clear()
    # KICK errors: 461, 403, 442 (not a member), 482 (not an operator), 401, 441.
    a.raw("KICK #room")
    a.expect("needmoreparams", lambda e: e.arguments[0] == "KICK")
    a.raw("KICK #nowhere bob")
    a.expect("nosuchchannel", lambda e: e.arguments[0] == "#nowhere")
    c.raw("KICK #room bob")
    c.expect("notonchannel", lambda e: e.arguments[0] == "#room")
    b.raw("KICK #room alice")
    b.expect("chanoprivsneeded", lambda e: e.arguments[0] == "#room")
    a.raw("KICK #lanchat bob")
    a.expect("chanoprivsneeded", lambda e: e.arguments[0] == "#lanchat")
    a.raw("KICK #room ghost")
    a.expect("nosuchnick", lambda e: e.arguments[0] == "ghost")
    a.raw("KICK #room carol")
    a.expect("usernotinchannel", lambda e: e.arguments[:2] == ["carol", "#room"])
    # INVITE errors: 461, 401, 403, 442 (inviter not a member), 443 (already in it).
    a.raw("INVITE carol")
    a.expect("needmoreparams", lambda e: e.arguments[0] == "INVITE")
    a.raw("INVITE ghost #room")
    a.expect("nosuchnick", lambda e: e.arguments[0] == "ghost")
    a.raw("INVITE carol #nowhere")
    a.expect("nosuchchannel", lambda e: e.arguments[0] == "#nowhere")
    c.raw("INVITE bob #room")
    c.expect("notonchannel", lambda e: e.arguments[0] == "#room")
    a.raw("INVITE bob #room")
    a.expect("useronchannel", lambda e: e.arguments[:2] == ["bob", "#room"])
    # INVITE of an IRC user: 341 to the inviter (not an operator: there is no +i), INVITE
    # to the target, nothing to other members.
    b.clear()
    b.raw("INVITE Carol #room")
    e = b.expect("inviting")
    check(e.arguments == ["carol", "#room"], f"341 {e.arguments}")
    e = c.expect("invite")
    check(e.source.nick == "bob" and e.target == "carol" and e.arguments == ["#room"], f"INVITE {e.source} {e.target} {e.arguments}")
    a.expect_none("invite", wait=0.3)
    c.conn.join("#room")
    c.expect("endofnames", lambda e: e.arguments[0] == "#room")
    # KICK with a reason: everyone in the channel sees it, the target included, and the
    # target is out of the group (NAMES); its voice went with it.
    a.raw("MODE #room +v carol")
    c.expect("mode", lambda e: e.arguments == ["+v", "carol"])
    a.clear()
    b.clear()
    c.clear()
    a.raw("KICK #room carol :be nice")
    for x in (a, b, c):
        e = x.expect("kick")
        check(e.source.nick == "alice" and e.target == "#room" and e.arguments == ["carol", "be nice"], f"{x.nick} KICK {e.target} {e.arguments}")
    a.conn.names(["#room"])
    e = a.expect("namreply", lambda e: e.arguments[1] == "#room")
    check(sorted(e.arguments[2].split()) == ["@alice", "bob"], f"names after kick {e.arguments}")
    c.raw("PRIVMSG #room :still here?")
    c.expect("cannotsendtochan")
    c.conn.join("#room")
    e = c.expect("namreply", lambda e: e.arguments[1] == "#room")
    check("carol" in e.arguments[2].split(), f"carol rejoined without +v: {e.arguments}")
    # Without a reason, the kicker's nick; several nicks at once, one KICK each.
    a.clear()
    a.raw("KICK #room bob,carol")
    e = a.expect("kick", lambda e: e.arguments[0] == "bob")
    check(e.arguments == ["bob", "alice"], f"default reason {e.arguments}")
    a.expect("kick", lambda e: e.arguments[0] == "carol")
    b.expect("kick", lambda e: e.arguments[0] == "bob")
    # A native user: invited with an INFO line saying how to join, kicked with an INFO line.
    a.raw("INVITE nate #room")
    a.expect("inviting", lambda e: e.arguments == ["nate", "#room"])
    line = n.line_with("INFO group-invited")
    check("alice" in line and "'group join room'" in line, line)
    n.send("group join room")
    n.line_with("OK group-joined")
    a.conn.names(["#room"])
    e = a.expect("namreply", lambda e: e.arguments[1] == "#room")
    check("nate" in e.arguments[2].split(), f"nate joined: {e.arguments}")
    a.raw("INVITE nate #room")
    a.expect("useronchannel", lambda e: e.arguments[:2] == ["nate", "#room"])
    a.raw("KICK #room nate :native out")
    e = a.expect("kick")
    check(e.arguments == ["nate", "native out"], f"native kick {e.arguments}")
    line = n.line_with("INFO group-kicked")
    check("alice" in line and "room" in line and "native out" in line, line)
    n.send("group send room hello?")
    n.line_with("ERR not-member")
    a.conn.names(["#room"])
    e = a.expect("namreply", lambda e: e.arguments[1] == "#room")
    check(e.arguments[2].split() == ["@alice"], f"names after native kick {e.arguments}")


GROUPS = {
    f.__name__: f
    for f in [registration, messages, channels, queries, bridge, password, timeouts, kick_invite]
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("group", choices=sorted(GROUPS))
    parser.add_argument("--irc", type=int, required=True)
    parser.add_argument("--native", type=int, required=True)
    opts = parser.parse_args()
    try:
        GROUPS[opts.group](opts)
    except Check as e:
        print(f"FAILED {opts.group}: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"ok {opts.group}")


if __name__ == "__main__":
    main()
