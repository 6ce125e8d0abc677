// Server-sent events read with fetch() and a stream reader: EventSource
// cannot send the Authorization header. `parser` is pure (tested under node).

import { raw } from './api.js';

/**
 * An incremental parser of the text/event-stream format: feed it text as it
 * arrives; it calls `onEvent({event, data, id})` for each complete event.
 * Comments (`: keep-alive`) are ignored; `data` lines are joined with \n.
 */
export function parser(onEvent) {
  let buffer = '';
  let event = '';
  let data = [];
  let id = '';
  const line = (text) => {
    if (text === '') {
      if (data.length) onEvent({ event: event || 'message', data: data.join('\n'), id });
      event = '';
      data = [];
      return;
    }
    if (text.startsWith(':')) return;
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id') id = value;
  };
  return {
    push(chunk) {
      buffer += chunk;
      let at;
      while ((at = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const sep = buffer.startsWith('\r\n', at) ? 2 : 1;
        line(buffer.slice(0, at));
        buffer = buffer.slice(at + sep);
      }
    },
  };
}

/**
 * Follows an SSE endpoint until `stop()` is called or an `end` event comes,
 * reconnecting after a pause when the stream breaks. Handlers: `on[event]`
 * gets each event's parsed JSON data (and `onAny(event, data)` every event); `onState('live'|'retrying'|'ended', error?)`
 * tells how the stream stands; `onUnsupported(error)` is called (and
 * following stops) when the server has no such stream (404/405/501).
 */
export function follow(path, { on = {}, onAny = () => {}, onState = () => {}, onUnsupported = () => {} } = {}) {
  const controller = new AbortController();
  let ended = false;
  let pause = 500;
  const run = async () => {
    while (!ended && !controller.signal.aborted) {
      try {
        const res = await raw(path, { signal: controller.signal, headers: { Accept: 'text/event-stream' } });
        onState('live');
        pause = 500;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        const p = parser(({ event, data }) => {
          let value = null;
          try {
            value = data ? JSON.parse(data) : null;
          } catch {
            value = data;
          }
          on[event]?.(value);
          onAny(event, value);
          if (event === 'end') {
            // The stream is over: say so, and let go of the connection.
            ended = true;
            onState('ended');
            controller.abort();
          }
        });
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          p.push(value);
        }
      } catch (error) {
        if (controller.signal.aborted) return;
        if ([404, 405, 501].includes(error.status)) {
          onUnsupported(error);
          return;
        }
        if (error.status === 401 || error.status === 403) {
          onState('ended', error);
          return;
        }
        onState('retrying', error);
      }
      if (ended || controller.signal.aborted) break;
      onState('retrying');
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(pause * 2, 10_000);
    }
  };
  run();
  return { stop: () => controller.abort() };
}
