// The heartbeat's clock, in a worker: browsers wake the timers of a hidden tab only once a
// minute, which would trip the server's heartbeat timeout (35 s) for a student who switched
// tabs; a worker's timers keep time. The page sends `heartbeat` on every tick.
'use strict';
let timer = null;
onmessage = (event) => {
  clearInterval(timer);
  timer = event.data > 0 ? setInterval(() => postMessage('tick'), event.data) : null;
};
