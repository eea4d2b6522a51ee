// Registers <agent-chat>; the JSX typings are in react.d.ts.
import './dist/index.js';
