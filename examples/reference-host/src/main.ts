console.log('The reference host is not built yet: see README.md for what exists.');
