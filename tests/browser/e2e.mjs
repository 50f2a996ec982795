// End-to-end test of lanchat's web client in real headless Chromium, driven by Playwright.
// tests/browser.rs starts a server (native and web doors on free ports) and runs
//
//   node tests/browser/e2e.mjs --web http://127.0.0.1:PORT/ --tcp PORT --pid PID --shots DIR
//
// and again against a server with `web_tls = true`: `--web https://...` and `--spki KEY`,
// the base64 SHA-256 of the server's public key, the only key Chromium is told to trust
// (--ignore-certificate-errors-spki-list), so every other certificate error still fails.
//
// A browser user (alice) talks with terminal-protocol users (bob, carol: raw TCP here, as
// nc would), and at the end the server process is stopped to see the page say so.
// Screenshots of the logged-in page (desktop, phone, projector) go to DIR.

import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const WAIT = 10000;

function options() {
  const args = process.argv.slice(2);
  const get = (name) => {
    const i = args.indexOf(name);
    if (i < 0 || i + 1 >= args.length) throw new Error(`missing ${name}`);
    return args[i + 1];
  };
  return {
    web: get('--web'),
    tcp: Number(get('--tcp')),
    pid: Number(get('--pid')),
    shots: get('--shots'),
    spki: args.includes('--spki') ? get('--spki') : null,
    chromium: process.env.LANCHAT_CHROMIUM || '/usr/bin/chromium',
  };
}

/** A terminal user: the native line protocol over TCP, every line kept. */
class Terminal {
  constructor(name, port) {
    this.name = name;
    this.lines = [];
    this.cursor = 0;
    this.waiters = [];
    this.closed = false;
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.setEncoding('utf8');
    // Tagged lines, not the prose for people (PROTOCOL.md 1); expect() skips the prose.
    this.socket.write('protocol lanchat/1\n');
    let partial = '';
    this.socket.on('data', (chunk) => {
      partial += chunk;
      let nl;
      while ((nl = partial.indexOf('\n')) >= 0) {
        this.lines.push(partial.slice(0, nl));
        partial = partial.slice(nl + 1);
      }
      this.wake();
    });
    this.socket.on('close', () => { this.closed = true; this.wake(); });
    this.socket.on('error', () => {});
  }

  wake() { for (const w of this.waiters.splice(0)) w(); }

  send(line) { this.socket.write(line + '\n'); }

  /** Waits for the next line (after the previous match) that starts with `prefix`. */
  async expect(prefix) {
    const deadline = Date.now() + WAIT;
    for (;;) {
      for (let i = this.cursor; i < this.lines.length; i++) {
        if (this.lines[i].startsWith(prefix)) {
          this.cursor = i + 1;
          return this.lines[i];
        }
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.closed) {
        throw new Error(`${this.name}: no line starting ${JSON.stringify(prefix)}; got:\n  `
          + this.lines.slice(this.cursor).join('\n  '));
      }
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  async login(password) {
    await this.expect('ASK username');
    this.send(this.name);
    await this.expect('ASK password');
    this.send(password);
    await this.expect(`WELCOME ${this.name}`);
  }

  close() { this.socket.destroy(); }
}

async function main() {
  const opt = options();
  fs.mkdirSync(opt.shots, { recursive: true });
  const problems = []; // console errors, page errors, failed requests
  let passed = 0;
  let page;

  const step = async (name, body) => {
    try {
      await body();
      passed += 1;
      console.log(`ok - ${name}`);
    } catch (error) {
      console.log(`not ok - ${name}\n${error.stack || error}`);
      if (page) await page.screenshot({ path: path.join(opt.shots, 'failure.png') }).catch(() => {});
      throw error;
    }
  };

  const browser = await chromium.launch({
    executablePath: opt.chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ...(opt.spki ? [`--ignore-certificate-errors-spki-list=${opt.spki}`] : [])],
  });
  const bob = new Terminal('bob', opt.tcp);
  let carol;
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    // A request the page cancels itself (net::ERR_ABORTED: the heartbeat worker terminated
    // while its script still loads, when a session ends at once) is not a failure.
    page.on('requestfailed', (r) => {
      const why = r.failure()?.errorText;
      if (why !== 'net::ERR_ABORTED') problems.push(`request failed: ${r.url()} ${why}`);
    });
    // Every URL the page asks for and every WebSocket it opens, to check that a page
    // served over HTTPS never falls back to plain HTTP or ws:// (and the reverse).
    const requested = [];
    const sockets = [];
    page.on('request', (r) => requested.push(r.url()));
    page.on('websocket', (ws) => sockets.push(ws.url()));
    await page.addInitScript(() => { window.__pwned = false; });

    const log = page.locator('#log');
    const lineWith = (cls, text) => log.locator(`.line.${cls}`, { hasText: text });
    const say = async (text) => {
      await page.locator('#entry').fill(text);
      await page.keyboard.press('Enter');
    };
    const visible = (locator) => locator.waitFor({ state: 'visible', timeout: WAIT });
    const hidden = (locator) => locator.waitFor({ state: 'hidden', timeout: WAIT });
    /** Waits until `locator` is visible and shows `expected`. */
    const textOf = async (locator, expected) => {
      try {
        await visible(locator.filter({ hasText: expected }));
      } catch (error) {
        const text = await locator.first().textContent().catch(() => null);
        throw new Error(`expected ${JSON.stringify(expected)}, shown: ${JSON.stringify(text)}`);
      }
    };
    const login = async (name, password) => {
      await page.locator('#username').fill(name);
      await page.locator('#password').fill(password);
      await page.locator('#password').press('Enter');
    };
    const userButton = (name) => page.locator('#users button', { has: page.locator('.name', { hasText: new RegExp(`^${name}$`) }) });

    await step('a terminal user logs in over TCP', () => bob.login('bobpw'));

    await step('the page loads from the server with its login form', async () => {
      await page.goto(opt.web);
      if ((await page.title()) !== 'lanchat') throw new Error(`title ${await page.title()}`);
      await visible(page.locator('#login-form'));
      const focused = await page.evaluate(() => document.activeElement.id);
      if (focused !== 'username') throw new Error(`focus on ${focused}, not the username`);
    });

    await step('a wrong password is refused inline', async () => {
      await login('alice', 'not-her-password');
      await textOf(page.locator('#login-error'), 'incorrect');
      await page.locator('#login-button:enabled').waitFor({ timeout: WAIT });
    });

    await step('repeated failures lock the name out and the page shows for how long', async () => {
      for (let i = 0; i < 3; i += 1) {
        await login('mallory', `guess-${i}`);
        await page.waitForFunction((n) => {
          const e = document.getElementById('login-error');
          return !e.hidden && !document.getElementById('login-button').disabled
            && (n < 2 ? e.textContent.includes('incorrect') : e.textContent.includes('blocked'));
        }, i, { timeout: WAIT });
      }
      await textOf(page.locator('#login-error'), 'blocked for 60 seconds');
    });

    await step('the right password logs in; the people list shows the terminal user', async () => {
      await login('alice', 'alicepw');
      await visible(page.locator('#chat'));
      await textOf(page.locator('#whoami'), 'alice');
      await visible(userButton('bob'));
      await bob.expect('PRESENCE alice login');
      const focused = await page.evaluate(() => document.activeElement.id);
      if (focused !== 'entry') throw new Error(`focus on ${focused}, not the entry line`);
    });

    await step('a private message from the terminal appears, marked private', async () => {
      bob.send('message alice hello from the terminal');
      await visible(lineWith('private', 'hello from the terminal'));
      await textOf(lineWith('private', 'hello from the terminal').locator('.who'), 'bob → you');
    });

    await step('clicking a name sends private messages to the terminal user', async () => {
      await userButton('bob').click();
      await textOf(page.locator('#target'), 'To bob');
      await say('hi bob, from the browser');
      await bob.expect('MSG alice hi bob, from the browser');
      await visible(lineWith('private.own', 'hi bob, from the browser'));
    });

    await step('with "Everyone" picked, plain text is a broadcast', async () => {
      await page.locator('#users button', { hasText: 'Everyone' }).click();
      await say('hello everyone');
      await bob.expect('BCAST alice hello everyone');
      // A text that starts with a broadcast keyword still goes whole, to those online.
      await say('message me later');
      await bob.expect('BCAST alice message me later');
      bob.send('broadcast hi all, says bob');
      await visible(lineWith('broadcast', 'hi all, says bob'));
    });

    await step('presence: a user who logs in and out comes and goes in the list', async () => {
      carol = new Terminal('carol', opt.tcp);
      await carol.login('carolpw');
      await visible(userButton('carol'));
      await visible(lineWith('presence', 'carol has joined'));
      carol.send('status busy');
      await textOf(userButton('carol').locator('.status'), 'busy');
      carol.send('logout');
      await carol.expect('BYE logout');
      await hidden(userButton('carol'));
    });

    await step('presence in a crowd: summaries keep the list right', async () => {
      // The server summarizes from the fourth user online on (tests/browser.rs).
      carol = new Terminal('carol', opt.tcp);
      await carol.login('carolpw');
      await visible(userButton('carol'));
      const dave = new Terminal('dave', opt.tcp);
      const erin = new Terminal('erin', opt.tcp);
      await dave.login('davepw');
      await erin.login('erinpw');
      await bob.expect('PRESENCES ');
      await visible(userButton('dave'));
      await visible(userButton('erin'));
      await visible(lineWith('presence', 'Joined: '));
      erin.send('status busy');
      await textOf(userButton('erin').locator('.status'), 'busy');
      dave.send('logout');
      await dave.expect('BYE logout');
      erin.send('logout');
      await erin.expect('BYE logout');
      carol.send('logout');
      await carol.expect('BYE logout');
      await hidden(userButton('dave'));
      await hidden(userButton('erin'));
      await hidden(userButton('carol'));
      // Back to a class: one PRESENCE line per event again once the last summary is out.
      await new Promise((resolve) => setTimeout(resolve, 500));
    });

    await step('hostile markup arrives as text and runs nothing', async () => {
      const hostile = '<img src=x onerror="window.__pwned=true"><script>window.__pwned=true</script><b>bold?</b>';
      bob.send(`message alice ${hostile}`);
      await visible(lineWith('private', 'bold?'));
      const shown = await lineWith('private', 'bold?').locator('.text').textContent();
      if (shown !== hostile) throw new Error(`shown as ${JSON.stringify(shown)}`);
      const elements = await log.locator('img, script, b').count();
      if (elements !== 0) throw new Error(`${elements} elements were created from the message`);
      await page.waitForTimeout(300);
      if (await page.evaluate(() => window.__pwned)) throw new Error('the message ran script');
    });

    await step('/help and other terminal commands work from the entry line', async () => {
      await say('/help');
      await visible(lineWith('list-title', 'Commands:'));
      await visible(lineWith('list-item', 'whoelse'));
      await say('/group create cs101');
      await visible(lineWith('ok', 'cs101'));
      bob.send('group join cs101');
      await bob.expect('OK group-joined');
      bob.send('group send cs101 homework is due friday');
      await visible(lineWith('group', 'homework is due friday'));
      await textOf(lineWith('group', 'homework is due friday').locator('.who'), 'bob → cs101');
    });

    await step('a chat session: accept by keyboard, talk both ways, end', async () => {
      bob.send('chat alice');
      const request = lineWith('session', 'bob');
      await visible(request.locator('button', { hasText: 'Accept' }));
      await request.locator('button', { hasText: 'Accept' }).focus();
      await page.keyboard.press('Enter');
      await bob.expect('SESSION started');
      await textOf(page.locator('#target'), 'chat');
      await page.locator('#entry').focus();
      await say('end of story, said alice');
      await bob.expect('TALK');
      const talk = bob.lines[bob.cursor - 1];
      if (!talk.endsWith(' alice end of story, said alice')) throw new Error(talk);
      bob.send('and bob answers');
      await visible(lineWith('session', 'and bob answers'));
      bob.send('end');
      await bob.expect('SESSION ended');
      await textOf(page.locator('#target'), 'To everyone');
    });

    await step('the heartbeat worker runs under the page\'s Content-Security-Policy', async () => {
      const ticked = await page.evaluate(() => new Promise((resolve) => {
        const worker = new Worker('/heartbeat.js');
        const timer = setTimeout(() => { worker.terminate(); resolve(false); }, 3000);
        worker.addEventListener('message', () => { clearTimeout(timer); worker.terminate(); resolve(true); });
        worker.postMessage(20);
      }));
      if (!ticked) throw new Error('no tick from /heartbeat.js');
    });

    await step('screenshots of the logged-in page: desktop, phone, projector', async () => {
      bob.send('message alice one more line, so the phone screenshot shows the end of the pane');
      await visible(lineWith('private', 'one more line'));
      await page.screenshot({ path: path.join(opt.shots, 'desktop.png') });
      await page.setViewportSize({ width: 390, height: 844 });
      await page.waitForTimeout(150);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      if (overflow > 0) throw new Error(`the phone layout scrolls sideways by ${overflow}px`);
      await page.locator('#log').evaluate((e) => { e.scrollTop = e.scrollHeight; });
      await page.screenshot({ path: path.join(opt.shots, 'phone.png') });
      await page.setViewportSize({ width: 1920, height: 1080 });
      await page.waitForTimeout(150);
      await page.screenshot({ path: path.join(opt.shots, 'projector.png') });
      await page.setViewportSize({ width: 1280, height: 800 });
    });

    await step('logging out says so and keeps the conversation readable', async () => {
      await page.locator('#logout').click();
      await textOf(page.locator('#ended-text'), 'You have logged out.');
      await bob.expect('PRESENCE alice logout');
      await visible(lineWith('private', 'hello from the terminal'));
      if (!(await page.locator('#entry-form').isHidden())) throw new Error('the entry line is still there');
      await page.screenshot({ path: path.join(opt.shots, 'logged-out.png') });
    });

    await step('offline mail delivered again (same id, as after a cut-off delivery) shows once', async () => {
      bob.send('message alice kept while you were away');
      await bob.expect('OK queued');
      // The page's next WebSocket hands it every MAIL line twice (the second one first).
      await page.evaluate(() => {
        const Native = window.WebSocket;
        window.__nativeWebSocket = Native;
        window.WebSocket = class extends Native {
          constructor(...args) {
            super(...args);
            const again = new WeakSet();
            this.addEventListener('message', (event) => {
              if (again.has(event) || typeof event.data !== 'string' || !event.data.startsWith('MAIL ')) return;
              const copy = new MessageEvent('message', { data: event.data });
              again.add(copy);
              this.dispatchEvent(copy);
            });
          }
        };
      });
      await page.locator('#again').click();
      await login('alice', 'alicepw');
      await visible(lineWith('private', 'kept while you were away'));
      await bob.expect('PRESENCE alice login');
      bob.send('message alice and a live one after it');
      await visible(lineWith('private', 'and a live one after it'));
      const shown = await lineWith('private', 'kept while you were away').count();
      if (shown !== 1) throw new Error(`the mail is shown ${shown} times`);
      const text = await lineWith('private', 'kept while you were away').locator('.text').textContent();
      if (text !== 'kept while you were away') throw new Error(`shown as ${JSON.stringify(text)}`);
      await page.evaluate(() => { window.WebSocket = window.__nativeWebSocket; });
      await page.locator('#logout').click();
      await textOf(page.locator('#ended-text'), 'You have logged out.');
      await bob.expect('PRESENCE alice logout');
    });

    await step('after logging in again, a server shutdown is shown', async () => {
      await page.locator('#again').click();
      await login('alice', 'alicepw');
      await visible(page.locator('#entry-form'));
      await bob.expect('PRESENCE alice login');
      process.kill(opt.pid, 'SIGTERM');
      await textOf(page.locator('#ended-text'), 'The server has shut down.');
      await visible(lineWith('bye', 'going down'));
      await visible(lineWith('private', 'hello from the terminal'));
    });

    await step('the page never mixes plain and secure: its requests and sockets share its scheme', async () => {
      const secure = new URL(opt.web).protocol === 'https:';
      const [http, ws] = secure ? ['https:', 'wss:'] : ['http:', 'ws:'];
      if (new URL(page.url()).protocol !== http) throw new Error(`the page is at ${page.url()}`);
      if (sockets.length === 0) throw new Error('no WebSocket was opened');
      const wrong = [
        ...requested.filter((u) => !['data:', 'blob:'].includes(new URL(u).protocol) && new URL(u).protocol !== http),
        ...sockets.filter((u) => new URL(u).protocol !== ws),
      ];
      if (wrong.length) throw new Error(`not ${http}/${ws}: ${wrong.join(' ')}`);
      console.log(`  ${requested.length} requests over ${http}, ${sockets.length} sockets over ${ws}`);
    });

    await step('no console errors, page errors or failed requests', async () => {
      if (problems.length) throw new Error(problems.join('\n'));
    });
  } finally {
    bob.close();
    if (carol) carol.close();
    await browser.close();
  }
  console.log(`browser e2e: ${passed} passed, 0 failed`);
}

main().catch((error) => {
  console.error(`browser e2e failed: ${error.message}`);
  process.exit(1);
});
