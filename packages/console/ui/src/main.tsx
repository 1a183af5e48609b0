// The Mallee web console: a Preact single-page app. Every call it makes is an EC2 or S3 request
// signed in the browser with the signed-in user's own keys.
import { render } from 'preact';
import { App } from './app.js';
import './style.css';

render(<App />, document.getElementById('app')!);
