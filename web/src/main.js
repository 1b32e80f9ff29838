// Entry point: the style sheets and the app.

import './style.css';
import { render } from 'preact';
import { html } from 'htm/preact';
import { App } from './app.js';

render(html`<${App} />`, document.getElementById('app'));
