// lanchat's web client. It speaks the native line protocol (PROTOCOL.md) over a WebSocket,
// one line per message, so every terminal command works here and web users are ordinary
// users to everyone else. Text from the server is only ever inserted with textContent,
// never as HTML.
'use strict';

(() => {
  const HEARTBEAT_MS = 30000; // as lanchat-client: the server's timeout is 35 s
  const MAX_LINES = 5000; // kept in the pane while the page is open
  const MAX_MAIL_IDS = 10000; // offline mail ids remembered, to drop a mail sent again

  // Number of space-free arguments before the free text, per kind (PROTOCOL.md 2.2).
  const ARITY = {
    HELLO: 1, ASK: 1, WELCOME: 1, OK: 1, ERR: 1, INFO: 1, MSG: 1, BCAST: 1, MAIL: 4,
    PRESENCE: 2, PRESENCES: 2, LIST: 2, USER: 3, HIST: 3, ENTRY: 1, SESSION: 3, TALK: 2, GROUP: 2,
    ADDR: 4, BYE: 1,
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    whoami: $('whoami'), conn: $('conn'), logout: $('logout'),
    login: $('login'), loginForm: $('login-form'), username: $('username'),
    password: $('password'), loginError: $('login-error'), loginButton: $('login-button'),
    chat: $('chat'), log: $('log'), users: $('users'), count: $('count'),
    entryForm: $('entry-form'), target: $('target'), entry: $('entry'), hint: $('hint'),
    ended: $('ended'), endedText: $('ended-text'), again: $('again'),
  };

  const state = {
    ws: null,
    me: null, // logged-in name
    asked: null, // what the server waits for during login: 'username' | 'password'
    creds: null, // {user, pass, userSent} while a login is under way
    byeSeen: false,
    target: null, // name for private messages; null: everyone online
    session: null, // {id, peer} of a started chat session
    users: new Map(), // name -> {status, intro}
    list: null, // {name, left, quiet} while a LIST's items arrive
    quietWhoelse: 0, // whoelse requests of the page itself (its reply fills the people list)
    pendingPongs: 0, // heartbeats not yet answered (their OK pong is not shown)
    answerIntro: false, // the server asked for an intro: the next entry line is it
    pending: new Set(), // people whose chat or address request awaits our answer
    // Ids of the offline mail shown while the page is open, logins included: the server sends
    // a mail again (same id) when its first delivery was cut off (PROTOCOL.md 5.1).
    mailSeen: new Set(),
    heartbeat: null,
  };

  /** Whether the offline mail with this id is new (and remembers it); the oldest ids go. */
  function firstMail(id) {
    if (!id || id === '-') return true;
    if (state.mailSeen.has(id)) return false;
    state.mailSeen.add(id);
    if (state.mailSeen.size > MAX_MAIL_IDS) {
      state.mailSeen.delete(state.mailSeen.values().next().value);
    }
    return true;
  }

  /** Splits a server line into kind, arguments and text; unknown kinds keep the raw text. */
  function parseLine(raw) {
    const space = raw.indexOf(' ');
    const kind = space < 0 ? raw : raw.slice(0, space);
    const arity = ARITY[kind];
    if (arity === undefined) return { kind: null, args: [], text: raw };
    let rest = space < 0 ? '' : raw.slice(space + 1);
    const args = [];
    for (let i = 0; i < arity; i++) {
      const end = rest.indexOf(' ');
      args.push(end < 0 ? rest : rest.slice(0, end));
      rest = end < 0 ? '' : rest.slice(end + 1);
    }
    return { kind, args, text: rest };
  }

  const clock = (date) => date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** Appends one line to the conversation: time, who, text, and optional buttons. */
  function add(type, text, opts = {}) {
    const row = el('div', 'line ' + type);
    const when = opts.time && !Number.isNaN(opts.time.getTime()) ? opts.time : new Date();
    const time = el('time', '', clock(when));
    time.dateTime = when.toISOString();
    time.title = when.toLocaleString();
    row.append(time);
    if (opts.who) row.append(el('span', 'who', opts.who));
    row.append(el('span', 'text', text));
    if (opts.actions) {
      const box = el('span', 'actions');
      for (const [label, command] of opts.actions) {
        const button = el('button', '', label);
        button.type = 'button';
        button.addEventListener('click', () => {
          send(command);
          addCommand(command);
          for (const b of box.querySelectorAll('button')) b.disabled = true;
          if (opts.onAction) opts.onAction();
          ui.entry.focus();
        });
        box.append(button);
      }
      row.append(box);
    }
    const log = ui.log;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
    log.append(row);
    while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
    if (atBottom || opts.own) log.scrollTop = log.scrollHeight;
    return row;
  }

  const addCommand = (command) => add('command own', command, { who: '>', own: true });

  function send(line) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(line);
      return true;
    }
    return false;
  }

  function setConn(text) { ui.conn.textContent = text; }

  // ---- Login -------------------------------------------------------------------------

  function loginError(text) {
    ui.loginError.textContent = text;
    ui.loginError.hidden = !text;
  }

  function loginBusy(busy) {
    ui.loginButton.disabled = busy;
    ui.loginButton.textContent = busy ? 'Logging in…' : 'Log in';
  }

  function connect() {
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const ws = new WebSocket(scheme + location.host + '/ws');
    state.ws = ws;
    state.asked = null;
    state.byeSeen = false;
    setConn('Connecting…');
    ws.addEventListener('open', () => { if (state.ws === ws) setConn('Connected'); });
    ws.addEventListener('message', (event) => {
      if (state.ws === ws && typeof event.data === 'string') onLine(event.data);
    });
    ws.addEventListener('close', () => onClosed(ws));
  }

  /** Answers the server's prompt with what the login form holds. */
  function answer() {
    const creds = state.creds;
    if (!creds) return;
    if (state.asked === 'username') {
      if (creds.userSent) {
        // Asked again without an error: the name was not accepted as typed.
        state.creds = null;
        loginError('Please enter a username.');
        loginBusy(false);
        ui.username.focus();
        return;
      }
      state.asked = null;
      creds.userSent = true;
      send(creds.user);
    } else if (state.asked === 'password') {
      state.asked = null;
      send(creds.pass);
      creds.pass = '';
    }
  }

  function onLoginLine(line) {
    switch (line.kind) {
      case 'ASK':
        state.asked = line.args[0];
        answer();
        break;
      case 'ERR':
        state.creds = null;
        loginError(line.text);
        loginBusy(false);
        if (line.args[0] === 'bad-login') {
          ui.password.value = '';
          ui.password.focus();
        } else {
          ui.username.select();
          ui.username.focus();
        }
        break;
      case 'BYE':
        // Locked out, timed out, server full or going down: the text says which and how long.
        state.byeSeen = true;
        state.creds = null;
        loginError(line.text);
        loginBusy(false);
        ui.password.value = '';
        break;
      case 'WELCOME':
        enterChat(line);
        break;
      default:
        break; // HELLO
    }
  }

  ui.loginForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const user = ui.username.value.trim();
    if (!user) {
      loginError('Please enter a username.');
      ui.username.focus();
      return;
    }
    state.creds = { user, pass: ui.password.value, userSent: false };
    loginError('');
    loginBusy(true);
    if (!state.ws || state.ws.readyState > WebSocket.OPEN) connect();
    else answer();
  });

  // ---- Chat --------------------------------------------------------------------------

  function enterChat(welcome) {
    state.me = welcome.args[0];
    state.creds = null;
    state.target = null;
    state.session = null;
    state.users.clear();
    state.list = null;
    state.pendingPongs = 0;
    state.answerIntro = false;
    state.pending.clear();
    ui.password.value = '';
    loginBusy(false);
    loginError('');
    ui.login.hidden = true;
    ui.chat.hidden = false;
    ui.ended.hidden = true;
    ui.entryForm.hidden = false;
    ui.entry.disabled = false;
    ui.logout.hidden = false;
    ui.whoami.hidden = false;
    ui.whoami.textContent = state.me;
    setConn('Online');
    document.title = state.me + ' · lanchat';
    add('system', welcome.text);
    state.quietWhoelse += 1;
    send('whoelse');
    startHeartbeat();
    renderUsers();
    updateTarget();
    ui.entry.focus();
  }

  function onChatLine(line, raw) {
    const [a0, a1, a2] = line.args;
    switch (line.kind) {
      case 'MSG':
        add('private', line.text, { who: `${a0} → you` });
        break;
      case 'BCAST':
        if (a0 === state.me) break; // our own broadcast echoed back: already shown
        add('broadcast', line.text, { who: `${a0} → everyone` });
        break;
      case 'GROUP':
        add('group', line.text, { who: `${a1} → ${a0}` });
        break;
      case 'TALK':
        add('session', line.text, { who: `${a1} (chat ${a0})` });
        break;
      case 'MAIL': {
        if (!firstMail(line.args[3])) break;
        const kind = a2 === 'private' ? 'private' : a2 === 'broadcast' ? 'broadcast' : 'group';
        const to = kind === 'private' ? 'you' : kind === 'broadcast' ? 'everyone' : a2.slice(6);
        add(kind, line.text, { who: `${a0} → ${to} (while you were away)`, time: new Date(a1) });
        break;
      }
      case 'PRESENCE':
        presence(a0, a1);
        add('presence', line.text);
        break;
      case 'PRESENCES':
        presences(a0, a1);
        add('presence', line.text);
        break;
      case 'SESSION':
        sessionEvent(line);
        break;
      case 'ADDR':
        if (a0 === 'request') {
          add('info', line.text, answers(a1));
        } else {
          state.pending.delete(a1);
          add('info', line.text);
        }
        updateTarget();
        break;
      case 'LIST':
        startList(line);
        break;
      case 'USER':
      case 'HIST':
      case 'ENTRY':
        listItem(line);
        break;
      case 'OK':
        if (a0 === 'pong' && state.pendingPongs > 0) {
          state.pendingPongs -= 1; // the answer to our own heartbeat
          break;
        }
        add('ok', line.text);
        break;
      case 'ERR':
        add('error', line.text);
        break;
      case 'INFO':
        add('info', line.text);
        break;
      case 'ASK':
        if (a0 === 'intro') state.answerIntro = true;
        add('info', line.text);
        updateTarget();
        ui.entry.focus();
        break;
      case 'BYE':
        state.byeSeen = true;
        ended(a0, line.text);
        break;
      default:
        add('system', raw);
    }
  }

  function onLine(raw) {
    const line = parseLine(raw);
    if (state.me) onChatLine(line, raw);
    else onLoginLine(line);
  }

  function presence(user, event) {
    const known = state.users.get(user) || { status: 'available', intro: '' };
    if (event === 'login' || event === 'available') {
      state.users.set(user, { ...known, status: 'available' });
    } else if (event === 'busy') {
      state.users.set(user, { ...known, status: 'busy' });
    } else {
      state.users.delete(user);
    }
    renderUsers();
  }

  /**
   * A crowd's summary (PROTOCOL.md 5.2): `user:change` items, then how many changes it does
   * not name; if any, the people list is refreshed from the server instead.
   */
  function presences(items, more) {
    for (const item of items === '-' ? [] : items.split(',')) {
      const colon = item.indexOf(':');
      if (colon < 0) continue;
      const user = item.slice(0, colon);
      const change = item.slice(colon + 1);
      if (user === state.me) continue;
      if (change === 'login-busy') {
        presence(user, 'login');
        presence(user, 'busy');
      } else {
        presence(user, change);
      }
    }
    if (Number(more) > 0 && state.quietWhoelse === 0) {
      state.quietWhoelse += 1;
      send('whoelse');
    }
  }

  /** Accept and Decline buttons for a request from `peer`, remembered until answered. */
  function answers(peer) {
    state.pending.add(peer);
    return {
      actions: [['Accept', `accept ${peer}`], ['Decline', `decline ${peer}`]],
      onAction: () => { state.pending.delete(peer); updateTarget(); },
    };
  }

  function sessionEvent(line) {
    const [event, id, peer] = line.args;
    if (event === 'request') {
      add('session', line.text, answers(peer));
      updateTarget();
      return;
    }
    state.pending.delete(peer);
    if (event === 'started') state.session = { id, peer };
    if (event === 'ended' && state.session && state.session.id === id) state.session = null;
    add('session', line.text);
    updateTarget();
  }

  function startList(line) {
    const [name, count] = line.args;
    const quiet = name === 'whoelse' && state.quietWhoelse > 0;
    if (quiet) state.quietWhoelse -= 1;
    if (name === 'whoelse') state.users.clear();
    state.list = { name, left: Number(count) || 0, quiet };
    if (!quiet) add('list-title', line.text);
    if (state.list.left <= 0) endList();
  }

  function listItem(line) {
    const list = state.list;
    const [a0, a1, a2] = line.args;
    if (line.kind === 'USER') {
      if (list && list.name === 'whoelse') state.users.set(a0, { status: a1, intro: line.text });
      if (!list || !list.quiet) {
        const seen = a2 && a2 !== '-' ? `, last seen ${clock(new Date(a2))}` : '';
        const intro = line.text ? ` — ${line.text}` : '';
        add('list-item', `${a0} (${a1}${seen})${intro}`);
      }
    } else if (line.kind === 'HIST') {
      const chat = a1 && a1 !== '-' ? ` (chat ${a1})` : '';
      add('list-item', line.text, { who: `${a2}${chat}:`, time: new Date(a0) });
    } else {
      add('list-item', line.text);
    }
    if (list) {
      list.left -= 1;
      if (list.left <= 0) endList();
    }
  }

  function endList() {
    if (state.list && state.list.name === 'whoelse') renderUsers();
    state.list = null;
  }

  // ---- People list and where plain text goes ------------------------------------------

  function userButton(label, name, status) {
    const item = el('li');
    const button = el('button');
    button.type = 'button';
    button.setAttribute('aria-pressed', String(state.target === name));
    button.append(el('span', name === null ? 'dot everyone' : `dot ${status}`));
    button.append(el('span', 'name', label));
    if (status) button.append(el('span', 'status', status));
    button.title = name === null ? 'Send to everyone online' : `Send private messages to ${name}`;
    button.addEventListener('click', () => setTarget(name));
    item.append(button);
    return item;
  }

  function renderUsers() {
    if (!state.me) {
      ui.users.replaceChildren();
      ui.count.textContent = '';
      return;
    }
    const names = [...state.users.keys()].sort();
    const items = [userButton('Everyone', null, '')];
    for (const name of names) items.push(userButton(name, name, state.users.get(name).status));
    ui.users.replaceChildren(...items);
    ui.count.textContent = `(${names.length})`;
  }

  function setTarget(name) {
    state.target = name;
    renderUsers();
    updateTarget();
    ui.entry.focus();
  }

  /** Shows where a plain line (no leading /) will go. */
  function updateTarget() {
    let label;
    let kind;
    let hint;
    if (state.answerIntro) {
      label = 'Your intro:';
      kind = '';
      hint = 'Type your personal introduction and press Enter (empty clears it).';
    } else if (state.session) {
      label = `To ${state.session.peer} (chat ${state.session.id})`;
      kind = 'session';
      hint = 'Enter sends to your chat partner. /end ends the chat; /help lists every command.';
    } else if (state.target) {
      label = `To ${state.target} (private)`;
      kind = 'private';
      hint = `Enter sends a private message to ${state.target}. Pick "Everyone" to broadcast; start with / for a command (/help lists them).`;
    } else {
      label = 'To everyone';
      kind = 'broadcast';
      hint = 'Enter broadcasts to everyone online. Pick a name to message one person; start with / for a command (/help lists them).';
    }
    if (state.pending.size > 0 && !state.answerIntro) {
      const who = [...state.pending].join(', ');
      hint = `${who} asked you: answer with the Accept or Decline button (or /accept NAME, /decline NAME). ${hint}`;
    }
    ui.target.textContent = label;
    ui.target.className = 'target ' + kind;
    ui.hint.textContent = hint;
    ui.entry.placeholder = state.answerIntro ? 'Your introduction' : 'Type a message or /command';
  }

  ui.entryForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const text = ui.entry.value;
    if (!state.me) return;
    if (state.answerIntro) {
      state.answerIntro = false;
      send(text);
      add('info own', text, { who: 'your intro:', own: true });
    } else if (!text.trim()) {
      return;
    } else if (text.startsWith('/')) {
      // A command, exactly as a terminal user would type it.
      send(text);
      addCommand(text);
    } else if (state.session) {
      send(`say ${text}`);
      add('session own', text, { who: `you (chat ${state.session.id})`, own: true });
    } else if (state.target) {
      send(`message ${state.target} ${text}`);
      add('private own', text, { who: `you → ${state.target}`, own: true });
    } else {
      send(`all ${text}`);
      add('broadcast own', text, { who: 'you → everyone', own: true });
    }
    ui.entry.value = '';
    updateTarget();
  });

  ui.logout.addEventListener('click', () => {
    if (!send('logout')) ended('lost', 'The connection to the server was lost.');
  });

  ui.again.addEventListener('click', () => {
    ui.login.hidden = false;
    ui.chat.hidden = true;
    ui.username.focus();
  });

  // ---- Heartbeat -----------------------------------------------------------------------

  function startHeartbeat() {
    stopHeartbeat();
    const beat = () => {
      if (state.me && send('heartbeat')) state.pendingPongs += 1;
    };
    try {
      const worker = new Worker('/heartbeat.js');
      worker.addEventListener('message', beat);
      worker.postMessage(HEARTBEAT_MS);
      state.heartbeat = () => worker.terminate();
    } catch (_) {
      const timer = setInterval(beat, HEARTBEAT_MS);
      state.heartbeat = () => clearInterval(timer);
    }
  }

  function stopHeartbeat() {
    if (state.heartbeat) state.heartbeat();
    state.heartbeat = null;
  }

  // ---- The end of a session --------------------------------------------------------------

  const ENDINGS = {
    logout: 'You have logged out.',
    shutdown: 'The server has shut down.',
    lost: 'The connection to the server was lost.',
  };

  /** Leaves the conversation readable and says why it ended. */
  function ended(reason, text) {
    if (!state.me) return;
    add('bye', text);
    state.me = null;
    state.session = null;
    state.answerIntro = false;
    state.pending.clear();
    stopHeartbeat();
    ui.entryForm.hidden = true;
    ui.ended.hidden = false;
    ui.endedText.textContent = ENDINGS[reason] || text;
    ui.logout.hidden = true;
    ui.whoami.hidden = true;
    state.users.clear();
    renderUsers();
    setConn('Not connected');
    document.title = 'lanchat';
    ui.again.focus();
  }

  function onClosed(ws) {
    if (state.ws !== ws) return;
    state.ws = null;
    state.asked = null;
    stopHeartbeat();
    if (state.me) {
      ended('lost', 'The connection to the server was lost.');
    } else {
      setConn('Not connected');
      if (state.creds || !state.byeSeen) {
        if (state.creds) loginError('Could not reach the chat server. Is it running? Try again.');
        state.creds = null;
        loginBusy(false);
      }
    }
  }

  updateTarget();
  ui.username.focus();
})();
