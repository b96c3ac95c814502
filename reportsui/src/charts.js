/*! Apache ECharts 6.1.0 from npm (Apache-2.0), only the parts the /reports page draws with, bundled by esbuild (`npm run build` in reportsui/) so the page loads it from zenklav, not from a CDN */
// The page draws a line chart (trends) and heat maps (the cohort triangles) on canvas. The
// tree-shaken core keeps the bundle to what those need; reports.js reads window.ZenklavCharts.
import * as echarts from 'echarts/core';
import { LineChart, HeatmapChart } from 'echarts/charts';
import {
  GridComponent,
  TooltipComponent,
  LegendComponent,
  VisualMapComponent,
  TitleComponent,
} from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';

echarts.use([LineChart, HeatmapChart, GridComponent, TooltipComponent, LegendComponent, VisualMapComponent, TitleComponent, CanvasRenderer]);

window.ZenklavCharts = { init: echarts.init, dispose: echarts.dispose, version: echarts.version };
